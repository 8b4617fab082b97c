//! The engine behind the agents' LLM calls.

use crate::agents::host::HostFuture;
use crate::agents::hub_messages::LlmRequest;
use crate::engine::{Engine, FinishReason};

/// The engine behind the agents' LLM calls.
pub trait LlmService {
    fn backend(&self) -> String;
    /// Completes a batch of requests (in batch order).
    fn complete<'a>(&'a mut self, batch: &'a [LlmRequest]) -> HostFuture<'a, Vec<Result<LlmReply, String>>>;
}

/// The engine itself serves agents: each request is a chat of the agent's system prompt and the
/// turn's request; a batch decodes together (see [`Engine::generate_batch`]).
impl LlmService for Engine {
    fn backend(&self) -> String {
        format!("{:?}", Engine::backend(self)).to_lowercase()
    }

    fn complete<'a>(&'a mut self, batch: &'a [LlmRequest]) -> HostFuture<'a, Vec<Result<LlmReply, String>>> {
        Box::pin(async move {
            let requests: Vec<_> = batch.iter().map(LlmRequest::generation).collect();
            match self.generate_batch(&requests).await {
                Err(e) => batch.iter().map(|_| Err(e.to_string())).collect(),
                Ok(done) => done
                    .into_iter()
                    .map(|r| {
                        r.map(|done| LlmReply {
                            text: done.text,
                            prompt_tokens: done.prompt_tokens,
                            completion_tokens: done.completion_tokens,
                            finish_reason: done.finish_reason,
                        })
                        .map_err(|e| e.to_string())
                    })
                    .collect(),
            }
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct LlmReply {
    pub text: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub finish_reason: FinishReason,
}
