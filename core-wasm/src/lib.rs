//! Hearth's core: everything that is neither a kernel nor a platform binding. It compiles for
//! native targets and wasm32 alike and never touches web-sys; its tests run natively.

// The threaded wasm build (nightly, +atomics) blocks on the bus with `memory.atomic.wait32`.
#![cfg_attr(all(target_arch = "wasm32", target_feature = "atomics"), feature(stdarch_wasm_atomic_wait))]

pub mod agents;
pub mod bus;
pub mod catalog;
pub mod chat_template;
pub mod constraint;
pub mod engine;
pub mod gguf;
#[cfg(unix)]
pub mod mapped_file;
pub mod memory_plan;
pub mod model;
pub mod probe;
pub mod protocol;
pub mod sampler;
pub mod tokenizer;
pub mod tool_call;

pub use hearth_kernels as kernels;
