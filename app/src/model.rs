//! The chat model: which one is picked (a shipped one, one kept in this browser, or one opened
//! for the session), the backend and context it loads with, and how its loading went. The
//! page has one ([`ModelStatus`], in the context); the chat, the model card, the workflows and
//! `window.hearth` read it.

use hearth_api::catalog::{DEFAULT_MODEL, ModelEntry, model_url, shipped_model};
use hearth_api::generate::{Backend, BackendChoice};
use hearth_api::protocol::{EngineEvent, EngineRequest, ModelSource, PAGE_CONTEXT};
use leptos::prelude::*;

use crate::engine_client::{EngineClient, page_param};
use crate::model_files::StoredModel;

/// The backend the page asks for: `?backend=cpu|gpu|auto`, auto when absent or unreadable.
pub fn backend_param() -> BackendChoice {
    page_param("backend").and_then(|b| b.parse().ok()).unwrap_or_default()
}

/// The model the page asks for: `?model=<id>`, a shipped model (e.g. `gemma-3-270m-q4_k_m`) or
/// else a file the server has under `models/<id>.gguf` for this session (what the launcher's
/// `--model FILE` serves; `&model-size=` gives its bytes); the default model when absent.
pub fn model_param() -> ChatModel {
    let Some(id) = page_param("model").filter(|id| !id.is_empty()) else { return ChatModel::Shipped(&DEFAULT_MODEL) };
    if let Some(entry) = shipped_model(&id) {
        return ChatModel::Shipped(entry);
    }
    let name = format!("{id}.gguf");
    let size = page_param("model-size").and_then(|s| s.parse().ok()).unwrap_or(0);
    let url = format!("models/{}", js_sys::encode_uri_component(&name));
    ChatModel::Opened { name, size, url }
}

/// Positions of context the page loads its model with: `?ctx=N`, else [`PAGE_CONTEXT`].
pub fn context_param() -> usize {
    page_param("ctx").and_then(|n| n.parse().ok()).filter(|&n| n > 0).unwrap_or(PAGE_CONTEXT)
}

/// The model the chat runs.
#[derive(Clone, Debug, PartialEq)]
pub enum ChatModel {
    /// One the app ships, served under `models/` (and then kept in the model cache).
    Shipped(&'static ModelEntry),
    /// A GGUF file the user added, kept in this browser (OPFS).
    Stored(StoredModel),
    /// A GGUF file read for this session only: one the user opened where there is no OPFS
    /// (through a `blob:` URL), or one the launcher serves from its command line (`?model=`).
    Opened { name: String, size: u64, url: String },
}

impl ChatModel {
    pub fn name(&self) -> String {
        match self {
            Self::Shipped(entry) => entry.name.to_string(),
            Self::Stored(StoredModel { name, .. }) | Self::Opened { name, .. } => name.clone(),
        }
    }

    pub fn size(&self) -> u64 {
        match self {
            Self::Shipped(entry) => entry.size,
            Self::Stored(StoredModel { size, .. }) | Self::Opened { size, .. } => *size,
        }
    }

    pub fn source(&self) -> ModelSource {
        match self {
            Self::Shipped(entry) => ModelSource::Url { url: model_url(entry) },
            Self::Stored(model) => ModelSource::Stored { name: model.name.clone() },
            Self::Opened { url, .. } => ModelSource::Session { url: url.clone() },
        }
    }

    /// Its value in the model picker: a shipped model's id, `stored:<name>`, `opened:<name>`.
    pub fn key(&self) -> String {
        match self {
            Self::Shipped(entry) => entry.id().to_string(),
            Self::Stored(model) => format!("stored:{}", model.name),
            Self::Opened { name, .. } => format!("opened:{name}"),
        }
    }
}

/// The chat model in the engine worker.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelState {
    NotLoaded,
    Loading { loaded: u64, total: Option<u64> },
    Loaded { bytes: u64, context: usize, ms: f64, backend: Backend, note: Option<String>, from_cache: bool },
    Failed(String),
}

/// The page's chat model and its state, updated from the engine worker's events.
#[derive(Clone, Copy)]
pub struct ModelStatus {
    pub state: RwSignal<ModelState>,
    /// What the model being loaded (or loaded last) needs in memory, read from its header
    /// before its weights.
    pub plan: RwSignal<Option<String>>,
    /// The model the chat runs (picked in the model card, or `?model=`).
    pub selected: RwSignal<ChatModel>,
    /// The backend picked in the chat's settings (or `?backend=`).
    pub backend: RwSignal<BackendChoice>,
    /// Positions of context the model is loaded with: the chat's settings (or `?ctx=`).
    pub context: RwSignal<usize>,
}

impl ModelStatus {
    /// The model the page's URL asks for, loaded as soon as the engine is ready.
    pub fn new(engine: &EngineClient) -> Self {
        let status = Self {
            state: RwSignal::new(ModelState::NotLoaded),
            plan: RwSignal::new(None),
            selected: RwSignal::new(model_param()),
            backend: RwSignal::new(backend_param()),
            context: RwSignal::new(context_param()),
        };
        let engine = *engine;
        engine.listen(move |event| match event {
            // The chat needs the model; fetch it as soon as the engine can take it.
            EngineEvent::Ready { .. } => status.reload(&engine),
            EngineEvent::ModelPlan { plan, .. } => status.plan.set(Some(plan.clone())),
            EngineEvent::ModelProgress { loaded, total } => {
                status.state.set(ModelState::Loading { loaded: *loaded, total: *total })
            }
            EngineEvent::ModelLoaded { bytes, context, ms, backend, backend_note, from_cache, .. } => {
                status.state.set(ModelState::Loaded {
                    bytes: *bytes,
                    context: *context,
                    ms: *ms,
                    backend: *backend,
                    note: backend_note.clone(),
                    from_cache: *from_cache,
                })
            }
            EngineEvent::BackendChanged { backend: now, note: why } => status.state.update(|m| {
                if let ModelState::Loaded { backend, note, .. } = m {
                    (*backend, *note) = (*now, why.clone());
                }
            }),
            EngineEvent::ModelFailed { message, .. } => status.state.set(ModelState::Failed(message.clone())),
            _ => {}
        });
        status
    }

    /// Loads the selected model onto the selected backend, in place of the one loaded.
    pub fn reload(&self, engine: &EngineClient) {
        self.state.set(ModelState::Loading { loaded: 0, total: None });
        self.plan.set(None);
        let source = self.selected.get_untracked().source();
        let (backend, context) = (self.backend.get_untracked(), self.context.get_untracked());
        engine.send(&EngineRequest::LoadModel { source, backend, context });
    }

    pub fn is_loaded(&self) -> bool {
        matches!(self.state.get(), ModelState::Loaded { .. })
    }
}
