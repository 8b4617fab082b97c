//! Any text as a workflow file: `Workflow::from_toml` returns a workflow or an error — never
//! panics — and a syntax error names a line that exists.
#![no_main]

use hearth_api::workflow::{Workflow, WorkflowError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(WorkflowError::Syntax { line, .. }) = Workflow::from_toml(text) {
        assert!(line >= 1 && line <= text.lines().count().max(1) + 1, "line {line} of {} lines", text.lines().count());
    }
});
