//! The engine serves the agents' LLM calls (`hearth-agents` reaches it through this trait
//! only): a batch decodes together (see [`Engine::generate_batch`]).

use hearth_api::generate::{Completion, GenerateParams, Prompt};
use hearth_api::llm_service::{LlmFuture, LlmService};

use crate::engine::Engine;

impl LlmService for Engine {
    fn backend(&self) -> String {
        format!("{:?}", Engine::backend(self)).to_lowercase()
    }

    fn complete<'a>(
        &'a mut self,
        batch: &'a [(Prompt, GenerateParams)],
    ) -> LlmFuture<'a, Vec<Result<Completion, String>>> {
        Box::pin(async move {
            match self.generate_batch(batch).await {
                Err(e) => batch.iter().map(|_| Err(e.to_string())).collect(),
                Ok(done) => done.into_iter().map(|r| r.map_err(|e| e.to_string())).collect(),
            }
        })
    }
}
