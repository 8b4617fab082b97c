//! Any template source (as a model file might carry) rendering a conversation taken from the
//! same bytes: compiling and rendering return text or an error — never panic, and never run
//! past the render's fuel (libFuzzer reports a hang as a crash).
#![no_main]

use hearth_core::chat_template::{ChatMessage, ChatTemplate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The template, then the messages' contents, separated by NUL.
    let mut parts = text.split('\0');
    let source = parts.next().unwrap_or_default();
    let Ok(template) = ChatTemplate::new(source, "<s>", "</s>") else { return };
    let roles = ["system", "user", "assistant", "tool"];
    let messages: Vec<ChatMessage> =
        parts.enumerate().map(|(i, content)| ChatMessage::new(roles[i % roles.len()], content)).collect();
    let _ = template.render(&messages, true);
    let _ = template.render(&messages, false);
});
