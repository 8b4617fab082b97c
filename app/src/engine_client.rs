//! The page's side of the engine worker: picks the runtime build, starts the worker, and turns
//! its messages into signals.

use std::collections::VecDeque;

use hearth_api::catalog::{DEFAULT_MODEL, ModelEntry, model_url, shipped_model};
use hearth_api::chat::ChatMessage;
use hearth_api::generate::{Backend, BackendChoice, Completion};
use hearth_api::protocol::{
    Capabilities, EngineEvent, EngineRequest, KernelOutcome, ModelSource, MonitorSample, PAGE_CONTEXT, RuntimeBuild,
};
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{MessageEvent, Worker, WorkerOptions, WorkerType};

use crate::model_files::StoredModel;
use crate::workflows::WorkflowRun;

/// A wasm module with a shared memory and an atomic op (wasm-feature-detect's threads probe):
/// it validates only where the engine supports wasm threads.
const THREADS_PROBE: [u8; 37] = [
    0, 97, 115, 109, 1, 0, 0, 0, 1, 4, 1, 96, 0, 0, 3, 2, 1, 0, 5, 4, 1, 3, 1, 1, 10, 11, 1, 9, 0, 65, 0, 254, 16, 2,
    0, 26, 11,
];

/// Which build the page loads, and the reason, shown to the user.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildChoice {
    pub build: RuntimeBuild,
    pub reason: String,
    pub cross_origin_isolated: bool,
}

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

/// A query parameter of the page's URL.
fn page_param(name: &str) -> Option<String> {
    let search = web_sys::window()?.location().search().ok()?;
    web_sys::UrlSearchParams::new_with_str(&search).ok()?.get(name)
}

/// Feature detection: the threaded build needs cross-origin isolation, SharedArrayBuffer and
/// wasm threads; `?build=single` forces the single-threaded build.
pub fn choose_build() -> BuildChoice {
    let has_sab = js_sys::Reflect::has(&js_sys::global(), &JsValue::from_str("SharedArrayBuffer")).unwrap_or(false);
    // Read as a property: engines without the attribute (Servo 0.7) leave it undefined, and
    // there SharedArrayBuffer exists only where the embedder gave its pages shared memory
    // (Hearth's patched Servo), which is what isolation is for.
    let isolated = match js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("crossOriginIsolated")) {
        Ok(v) if v.is_undefined() => has_sab,
        Ok(v) => v.is_truthy(),
        Err(_) => false,
    };
    let forced = page_param("build");
    let wasm_threads =
        js_sys::WebAssembly::validate(&js_sys::Uint8Array::from(&THREADS_PROBE[..]).into()).unwrap_or(false);

    let (build, reason) = if forced.as_deref() == Some("single") {
        (RuntimeBuild::SingleThreaded, "forced by ?build=single".to_string())
    } else if !isolated {
        (
            RuntimeBuild::SingleThreaded,
            "the page is not cross-origin isolated (the server must send COOP: same-origin and COEP: require-corp)"
                .to_string(),
        )
    } else if !has_sab {
        (RuntimeBuild::SingleThreaded, "SharedArrayBuffer is not available in this engine".to_string())
    } else if !wasm_threads {
        (RuntimeBuild::SingleThreaded, "this engine cannot compile wasm with shared memory".to_string())
    } else {
        (RuntimeBuild::Threaded, "cross-origin isolated, with SharedArrayBuffer and wasm threads".to_string())
    };
    BuildChoice { build, reason, cross_origin_isolated: isolated }
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

/// What the engine worker has told the page so far.
#[derive(Clone, Debug, PartialEq)]
pub enum EngineState {
    Starting,
    Ready(Capabilities),
    Failed(String),
}

/// The chat model in the engine worker.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelState {
    NotLoaded,
    Loading { loaded: u64, total: Option<u64> },
    Loaded { bytes: u64, context: usize, ms: f64, backend: Backend, note: Option<String>, from_cache: bool },
    Failed(String),
}

/// The conversation: finished turns, the reply streaming in, and how the last one went.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChatState {
    pub messages: Vec<ChatMessage>,
    /// The id and text so far of the reply being generated.
    pub reply: Option<(u32, String)>,
    pub last: Option<Completion>,
    pub error: Option<String>,
    next_id: u32,
}

impl ChatState {
    /// Adds the user's message and returns the id of the reply to ask for.
    pub fn begin_reply(&mut self, text: String) -> u32 {
        self.messages.push(ChatMessage::new("user", text));
        self.next_id += 1;
        self.reply = Some((self.next_id, String::new()));
        self.error = None;
        self.next_id
    }

    fn apply(&mut self, event: EngineEvent) {
        match event {
            EngineEvent::Delta { id, text } => {
                if let Some((reply_id, reply)) = &mut self.reply
                    && *reply_id == id
                {
                    reply.push_str(&text);
                }
            }
            EngineEvent::Done { id, completion } if self.reply.as_ref().is_some_and(|(r, _)| *r == id) => {
                self.reply = None;
                self.messages.push(ChatMessage::new("assistant", completion.text.clone()));
                self.last = Some(completion);
            }
            EngineEvent::Failed { id, message } => {
                if self.reply.as_ref().is_some_and(|(reply_id, _)| *reply_id == id) {
                    self.reply = None;
                    // The unanswered message goes back to the input rather than staying half-done.
                    self.messages.pop();
                }
                self.error = Some(message);
            }
            _ => {}
        }
    }
}

/// GPU milliseconds of one decode step per kernel family, slowest first.
pub type StepProfile = Vec<(String, f64)>;

/// Handle to the engine worker, shared by the components that talk to it.
#[derive(Clone)]
pub struct EngineClient {
    /// The runtime build the page loads, and why (it changes if the threaded build cannot start).
    pub choice: RwSignal<BuildChoice>,
    pub state: RwSignal<EngineState>,
    /// The latest kernel-probe results: (gpu, cpu).
    pub kernels: RwSignal<Option<(KernelOutcome, KernelOutcome)>>,
    pub busy: RwSignal<bool>,
    pub model: RwSignal<ModelState>,
    /// What the model being loaded (or loaded last) needs in memory, read from its header
    /// before its weights.
    pub plan: RwSignal<Option<String>>,
    /// The model the chat runs (picked in the model card, or `?model=`).
    pub selected: RwSignal<ChatModel>,
    /// The backend picked in the chat's settings (or `?backend=`).
    pub backend: RwSignal<BackendChoice>,
    /// Positions of context the model is loaded with: the chat's settings (or `?ctx=`).
    pub context: RwSignal<usize>,
    pub chat: RwSignal<ChatState>,
    /// The workflow the engine runs or ran last.
    pub workflow: RwSignal<WorkflowRun>,
    /// The engine's latest monitor samples, oldest first.
    pub monitor: RwSignal<VecDeque<MonitorSample>>,
    /// The last GPU profile of a decode step, or why there is none.
    pub step_profile: RwSignal<Option<Result<StepProfile, String>>>,
    worker: StoredValue<Option<Worker>, LocalStorage>,
}

impl EngineClient {
    pub fn start() -> Self {
        let engine = Self {
            choice: RwSignal::new(choose_build()),
            state: RwSignal::new(EngineState::Starting),
            kernels: RwSignal::new(None),
            busy: RwSignal::new(false),
            model: RwSignal::new(ModelState::NotLoaded),
            plan: RwSignal::new(None),
            selected: RwSignal::new(model_param()),
            backend: RwSignal::new(backend_param()),
            context: RwSignal::new(context_param()),
            chat: RwSignal::new(ChatState::default()),
            workflow: RwSignal::new(WorkflowRun::restore()),
            monitor: RwSignal::new(VecDeque::new()),
            step_profile: RwSignal::new(None),
            worker: StoredValue::new_local(None),
        };
        engine.start_worker();
        engine
    }

    /// Starts the engine worker on the chosen build. If the threaded build fails before the
    /// engine is ready (an engine whose workers cannot receive a wasm module or a shared
    /// memory, say), the single-threaded build starts instead, and the reason is shown.
    fn start_worker(&self) {
        let build = self.choice.get_untracked().build;
        let options = WorkerOptions::new();
        options.set_type(WorkerType::Module);
        let mut url = format!("engine-worker.js?build={}", build.dir());
        if let Some(threads) = page_param("threads").and_then(|t| t.parse::<usize>().ok()) {
            url.push_str(&format!("&threads={threads}"));
        }
        let worker = match Worker::new_with_options(&url, &options) {
            Ok(worker) => worker,
            Err(e) => {
                self.state.set(EngineState::Failed(format!("cannot start the engine worker: {e:?}")));
                return;
            }
        };

        let engine = self.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let (state, model, chat) = (engine.state, engine.model, engine.chat);
            match serde_wasm_bindgen::from_value::<EngineEvent>(event.data()) {
                Ok(EngineEvent::Ready { capabilities }) => {
                    state.set(EngineState::Ready(capabilities));
                    // The chat needs the model; fetch it as soon as the engine can take it.
                    engine.reload_model();
                }
                Ok(EngineEvent::ModelPlan { plan, .. }) => engine.plan.set(Some(plan)),
                Ok(EngineEvent::ModelProgress { loaded, total }) => model.set(ModelState::Loading { loaded, total }),
                Ok(EngineEvent::ModelLoaded { bytes, context, ms, backend, backend_note, from_cache, .. }) => {
                    model.set(ModelState::Loaded { bytes, context, ms, backend, note: backend_note, from_cache })
                }
                Ok(EngineEvent::BackendChanged { backend: now, note: why }) => model.update(|m| {
                    if let ModelState::Loaded { backend, note, .. } = m {
                        (*backend, *note) = (now, why);
                    }
                }),
                Ok(EngineEvent::ModelFailed { message, .. }) => model.set(ModelState::Failed(message)),
                Ok(
                    event @ (EngineEvent::Transcript { .. }
                    | EngineEvent::AgentState { .. }
                    | EngineEvent::WorkflowHeld { .. }
                    | EngineEvent::WorkflowEnded { .. }),
                ) => {
                    crate::js_api::on_event(&event);
                    engine.workflow.update(|run| {
                        run.apply(&event);
                    });
                }
                Ok(EngineEvent::StepProfile { ops, .. }) => {
                    engine.step_profile.set(Some(Ok(ops)));
                    engine.busy.set(false);
                }
                Ok(EngineEvent::Failed { id: crate::monitor::PROFILE_ID, message }) => {
                    engine.step_profile.set(Some(Err(message)));
                    engine.busy.set(false);
                }
                Ok(event) if crate::js_api::on_event(&event) => {}
                Ok(event @ (EngineEvent::Delta { .. } | EngineEvent::Done { .. } | EngineEvent::Failed { .. })) => {
                    chat.update(|chat| chat.apply(event))
                }
                Ok(EngineEvent::Tokens { .. } | EngineEvent::BusBenchDone { .. }) => {}
                Ok(EngineEvent::Monitor { sample }) => engine.monitor.update(|samples| {
                    if samples.len() == crate::monitor::HISTORY {
                        samples.pop_front();
                    }
                    samples.push_back(sample);
                }),
                Ok(EngineEvent::KernelsDone { gpu, cpu }) => {
                    engine.kernels.set(Some((gpu, cpu)));
                    engine.busy.set(false);
                }
                Ok(EngineEvent::Error { message }) => {
                    engine.busy.set(false);
                    engine.failed(build, message);
                }
                Err(e) => state.set(EngineState::Failed(format!("unreadable message from the engine: {e}"))),
            }
        });
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        on_message.forget();

        let engine = self.clone();
        let on_error = Closure::<dyn FnMut(web_sys::ErrorEvent)>::new(move |event: web_sys::ErrorEvent| {
            let at = format!("{}:{}:{}", event.filename(), event.lineno(), event.colno());
            engine.failed(build, format!("the engine worker crashed: {} (at {at})", event.message()));
        });
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        on_error.forget();

        self.worker.set_value(Some(worker));
    }

    /// The engine worker on `build` failed. Before it was ready, on the threaded build, the
    /// single-threaded build starts instead; otherwise the engine has failed.
    fn failed(&self, build: RuntimeBuild, message: String) {
        if build != RuntimeBuild::Threaded || self.state.get_untracked() != EngineState::Starting {
            return self.state.set(EngineState::Failed(message));
        }
        // The failed worker is silenced first: its own errors are not the new one's.
        self.worker.with_value(|w| {
            if let Some(w) = w {
                w.set_onmessage(None);
                w.set_onerror(None);
                w.terminate();
            }
        });
        self.choice.update(|choice| {
            choice.build = RuntimeBuild::SingleThreaded;
            choice.reason = format!("the threaded build did not start in this engine ({message})");
        });
        self.start_worker();
    }

    pub fn send(&self, request: &EngineRequest) {
        post(self.worker, request);
    }

    /// Loads the selected model onto the selected backend, in place of the one loaded.
    pub fn reload_model(&self) {
        self.model.set(ModelState::Loading { loaded: 0, total: None });
        self.plan.set(None);
        let source = self.selected.get_untracked().source();
        let (backend, context) = (self.backend.get_untracked(), self.context.get_untracked());
        self.send(&EngineRequest::LoadModel { source, backend, context });
    }
}

fn post(worker: StoredValue<Option<Worker>, LocalStorage>, request: &EngineRequest) {
    let Ok(value) = serde_wasm_bindgen::to_value(request) else { return };
    worker.with_value(|worker| {
        if let Some(worker) = worker {
            let _ = worker.post_message(&value);
        }
    });
}
