//! What answers the HTTP API's generations: the engine natively on a thread of its own, or the
//! engine in the app's page in a web engine ([`crate::page`]). One generation at a time, in the
//! order they come (a model has one KV cache).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hearth_core::engine::{BackendChoice, Completion, EngineError, GenerateParams, Prompt};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{Mutex, oneshot};

use crate::llm::{self, CliError};
use crate::page::{self, BoxFuture, Page};

/// Why a generation failed: the request (HTTP 400) or the engine (HTTP 500).
#[derive(Debug)]
pub enum CompleteError {
    Invalid(String),
    Failed(String),
}

pub trait Completer: Send + Sync + 'static {
    /// The backend the model runs on: `cpu` or `gpu`.
    fn backend(&self) -> &str;
    /// Where the model runs, e.g. `native (cpu)` or `chromium (gpu)`.
    fn describe(&self) -> String;
    /// Generates a completion, sending text to `deltas` as it streams.
    fn generate(
        &self,
        prompt: Prompt,
        params: GenerateParams,
        deltas: UnboundedSender<String>,
    ) -> BoxFuture<'_, Result<Completion, CompleteError>>;
    /// In a page, its engine's state ([`page::engine_state`]).
    fn page_state(&self) -> BoxFuture<'_, Option<serde_json::Value>> {
        Box::pin(async { None })
    }
}

struct Job {
    prompt: Prompt,
    params: GenerateParams,
    deltas: UnboundedSender<String>,
    reply: oneshot::Sender<Result<Completion, EngineError>>,
}

/// The engine natively, on a thread that owns it (an engine is not `Send`: its GPU context is
/// shared by reference counting).
pub struct NativeCompleter {
    jobs: std::sync::mpsc::Sender<Job>,
    backend: String,
}

impl NativeCompleter {
    /// Loads `model` on its own thread; returns once it has loaded, or why it could not.
    pub fn start(model: &Path, n_ctx: usize, backend: BackendChoice) -> Result<Self, CliError> {
        let (jobs, inbox) = std::sync::mpsc::channel::<Job>();
        let (loaded, on_load) = std::sync::mpsc::channel();
        let model = model.to_owned();
        std::thread::Builder::new()
            .name("hearth-engine".into())
            .spawn(move || {
                let mut engine = match llm::load_engine(&model, n_ctx, backend) {
                    Ok(engine) => {
                        let _ = loaded.send(Ok(format!("{:?}", engine.backend()).to_lowercase()));
                        engine
                    }
                    Err(e) => {
                        let _ = loaded.send(Err(e));
                        return;
                    }
                };
                for job in inbox {
                    let deltas = job.deltas;
                    // The reader gone (a client that hung up) ends the generation.
                    let result = pollster::block_on(engine.generate(&job.prompt, &job.params, |delta| {
                        if deltas.send(delta.to_string()).is_ok() {
                            std::ops::ControlFlow::Continue(())
                        } else {
                            std::ops::ControlFlow::Break(())
                        }
                    }));
                    let _ = job.reply.send(result);
                }
            })
            .map_err(|e| CliError::EngineThread(format!("cannot start it: {e}")))?;
        let backend = on_load.recv().map_err(|_| CliError::EngineThread("it stopped while loading".into()))??;
        Ok(Self { jobs, backend })
    }
}

impl Completer for NativeCompleter {
    fn backend(&self) -> &str {
        &self.backend
    }

    fn describe(&self) -> String {
        format!("native ({})", self.backend)
    }

    fn generate(
        &self,
        prompt: Prompt,
        params: GenerateParams,
        deltas: UnboundedSender<String>,
    ) -> BoxFuture<'_, Result<Completion, CompleteError>> {
        let (reply, answer) = oneshot::channel();
        let sent = self.jobs.send(Job { prompt, params, deltas, reply });
        Box::pin(async move {
            sent.map_err(|_| CompleteError::Failed("the engine thread has stopped".into()))?;
            match answer.await {
                Err(_) => Err(CompleteError::Failed("the engine thread has stopped".into())),
                Ok(Ok(completion)) => Ok(completion),
                Ok(Err(e)) => Err(match e {
                    EngineError::EmptyPrompt
                    | EngineError::PromptTooLong { .. }
                    | EngineError::Schema(_)
                    | EngineError::Tools(_)
                    | EngineError::ChatTemplate(_) => CompleteError::Invalid(e.to_string()),
                    other => CompleteError::Failed(other.to_string()),
                }),
            }
        })
    }
}

/// The engine in the app's page, one generation at a time.
pub struct PageCompleter {
    page: Mutex<Arc<dyn Page>>,
    engine: &'static str,
    backend: String,
}

/// Longest one generation may take in a page (software WebGPU is slow).
const PAGE_LIMIT: Duration = Duration::from_secs(900);

impl PageCompleter {
    /// Waits for the page's model to load.
    pub async fn start(page: Arc<dyn Page>) -> Result<Self, page::PageError> {
        let backend = page::wait_for_model(page.as_ref(), Duration::from_secs(600)).await?;
        Ok(Self { engine: page.engine(), page: Mutex::new(page), backend })
    }
}

impl Completer for PageCompleter {
    fn backend(&self) -> &str {
        &self.backend
    }

    fn describe(&self) -> String {
        format!("{} ({})", self.engine, self.backend)
    }

    fn generate(
        &self,
        prompt: Prompt,
        params: GenerateParams,
        deltas: UnboundedSender<String>,
    ) -> BoxFuture<'_, Result<Completion, CompleteError>> {
        Box::pin(async move {
            let page = self.page.lock().await;
            page::generate(page.as_ref(), &prompt, &params, &deltas, PAGE_LIMIT)
                .await
                .map_err(|e| CompleteError::Failed(e.to_string()))
        })
    }

    fn page_state(&self) -> BoxFuture<'_, Option<serde_json::Value>> {
        Box::pin(async move { page::engine_state(self.page.lock().await.as_ref()).await.ok() })
    }
}
