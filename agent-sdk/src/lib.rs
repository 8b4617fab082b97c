//! Write a Hearth custom agent in Rust.
//!
//! An agent is a `cdylib` built for `wasm32-unknown-unknown`. It names a handler with
//! [`agent!`]; the handler gets each [`Turn`] and answers with [`send`], using [`ask_llm`],
//! [`tool`], [`log`] and [`clock`] on the way. The module gets its own memory, an instruction
//! budget per turn and a memory limit, and nothing but these calls: no clock, no network, no
//! files. A panic is logged (`panic: ...`) and ends the turn as a fault, handled by the
//! workflow's supervision policy.
//!
//! ```ignore
//! fn shout(turn: hearth_agent_sdk::Turn) {
//!     hearth_agent_sdk::send(&turn.request.to_uppercase());
//! }
//! hearth_agent_sdk::agent!(shout);
//! ```

use serde::Deserialize;

/// One turn of the agent.
#[derive(Clone, Debug, Deserialize)]
pub struct Turn {
    /// The workflow's logical step.
    pub step: u32,
    /// This agent's turn number (0 for its first).
    pub turn: u32,
    /// 0, or how many times this turn was restarted after a fault.
    pub attempt: u32,
    /// What the agent is asked: the task, the messages it may see, and the instruction.
    pub request: String,
    /// The earlier messages this turn sees (they are also quoted in `request`).
    pub seen: Vec<Seen>,
    /// The `config` string of the agent in the workflow file.
    pub config: String,
}

/// A message of an earlier step.
#[derive(Clone, Debug, Deserialize)]
pub struct Seen {
    pub from: String,
    pub content: String,
}

mod abi {
    #[link(wasm_import_module = "hearth")]
    unsafe extern "C" {
        pub fn send(ptr: *const u8, len: usize);
        pub fn ask_llm(ptr: *const u8, len: usize) -> i32;
        pub fn tool(name_ptr: *const u8, name_len: usize, args_ptr: *const u8, args_len: usize) -> i32;
        pub fn take(ptr: *mut u8);
        pub fn log(ptr: *const u8, len: usize);
        pub fn clock() -> i64;
    }
}

/// Appends `text` to this turn's message.
pub fn send(text: &str) {
    // SAFETY: the host reads `len` bytes at `ptr`, inside this module's memory.
    unsafe { abi::send(text.as_ptr(), text.len()) }
}

/// A line in the workflow's transcript.
pub fn log(text: &str) {
    // SAFETY: as in `send`.
    unsafe { abi::log(text.as_ptr(), text.len()) }
}

/// The logical clock: the workflow step now.
pub fn clock() -> u64 {
    // SAFETY: no arguments.
    unsafe { abi::clock() as u64 }
}

/// The host's last result, `len` bytes.
fn take(len: usize) -> String {
    let mut buf = vec![0u8; len];
    // SAFETY: `buf` has room for the `len` bytes the host copies.
    unsafe { abi::take(buf.as_mut_ptr()) };
    String::from_utf8_lossy(&buf).into_owned()
}

/// Asks the workflow's LLM to complete `prompt` with the agent's system prompt and sampling.
pub fn ask_llm(prompt: &str) -> String {
    ask_llm_with(prompt, None, None)
}

/// [`ask_llm`] with another system prompt and/or token limit.
pub fn ask_llm_with(prompt: &str, system: Option<&str>, max_tokens: Option<usize>) -> String {
    let request = serde_json::json!({ "prompt": prompt, "system": system, "max_tokens": max_tokens }).to_string();
    // SAFETY: as in `send`.
    let len = unsafe { abi::ask_llm(request.as_ptr(), request.len()) };
    take(len.max(0) as usize)
}

/// Calls a built-in tool (`calculator`, `json_extract`, `scratchpad`); `Err` says why it failed.
pub fn tool(name: &str, args: &str) -> Result<String, String> {
    // SAFETY: as in `send`.
    let n = unsafe { abi::tool(name.as_ptr(), name.len(), args.as_ptr(), args.len()) };
    if n >= 0 { Ok(take(n as usize)) } else { Err(take((-1 - n) as usize)) }
}

#[doc(hidden)]
pub fn __alloc(len: i32) -> i32 {
    let mut buf = Vec::<u8>::with_capacity(len.max(0) as usize);
    let ptr = buf.as_mut_ptr();
    std::mem::forget(buf);
    ptr as i32
}

#[doc(hidden)]
pub fn __receive(ptr: i32, len: i32, handler: fn(Turn)) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| std::panic::set_hook(Box::new(|info| log(&format!("panic: {info}")))));
    let len = len.max(0) as usize;
    // SAFETY: `ptr` came from `__alloc(len)` and the host filled all `len` bytes.
    let bytes = unsafe { Vec::from_raw_parts(ptr as *mut u8, len, len) };
    let turn: Turn = serde_json::from_slice(&bytes).expect("the host sends a turn as JSON");
    handler(turn);
}

/// Exports `hearth_alloc` and `hearth_receive`, the latter calling `handler` for each turn.
#[macro_export]
macro_rules! agent {
    ($handler:path) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn hearth_alloc(len: i32) -> i32 {
            $crate::__alloc(len)
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn hearth_receive(ptr: i32, len: i32) {
            $crate::__receive(ptr, len, $handler)
        }
    };
}
