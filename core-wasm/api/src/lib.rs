//! The vocabulary Hearth's parts share, and nothing else: what a generation is asked and gives
//! back, chat and tool types, the page ↔ engine-worker protocol, the model catalog, what the
//! monitor and a workflow's transcript show, and the interface the agents reach the engine
//! through. Serde types only: the app depends on this crate and on no engine.

pub mod agents;
pub mod catalog;
pub mod chat;
pub mod generate;
pub mod llm_service;
pub mod monitor;
pub mod probe;
pub mod protocol;
pub mod tool_call;
pub mod workflow;
