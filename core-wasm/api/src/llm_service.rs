//! The engine behind the agents' LLM calls, as the agents runtime sees it: the agents reach
//! the engine only through this trait, which the engine (`hearth-core`) implements.

use std::future::Future;
use std::pin::Pin;

use crate::generate::{Completion, GenerateParams, Prompt};

/// A future the hub awaits; not `Send`, since a browser engine's futures hold JS values.
pub type LlmFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// The engine behind the agents' LLM calls.
pub trait LlmService {
    /// The backend it runs on, as the transcript names it (`cpu`, `gpu`).
    fn backend(&self) -> String;
    /// Completes a batch of generations, in batch order, each with the tokens it would get
    /// alone.
    fn complete<'a>(
        &'a mut self,
        batch: &'a [(Prompt, GenerateParams)],
    ) -> LlmFuture<'a, Vec<Result<Completion, String>>>;
}
