//! Hearth's core: everything that is neither a kernel nor a platform binding. It compiles for
//! native targets and wasm32 alike and never touches web-sys; its tests run natively.

pub mod agents;
pub mod bus;
pub mod catalog;
pub mod chat_template;
pub mod engine;
pub mod gguf;
pub mod model;
pub mod probe;
pub mod protocol;
pub mod sampler;
pub mod tokenizer;

pub use hearth_kernels as kernels;
