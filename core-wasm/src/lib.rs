//! Hearth's LLM stack: GGUF files, tokenizers, chat templates, the model architectures on both
//! backends, the generation engine and constrained decoding. The types it takes and gives are
//! `hearth-api`'s; the agents runtime (`hearth-agents`) reaches it through `LlmService`, which
//! [`engine::Engine`] implements. It compiles for native targets and wasm32 alike and never
//! touches web-sys; its tests run natively.

pub mod chat_template;
pub mod constraint;
pub mod engine;
pub mod gguf;
pub mod llm_service;
#[cfg(unix)]
pub mod mapped_file;
pub mod memory_plan;
pub mod model;
pub mod sampler;
pub mod tokenizer;
pub mod tool_call;

pub use hearth_kernels as kernels;
