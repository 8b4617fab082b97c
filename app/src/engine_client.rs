//! The page's side of the engine worker: picks the runtime build, starts the worker, gives
//! requests their ids and routes the worker's events.

use std::collections::HashMap;
use std::rc::Rc;

use hearth_api::protocol::{Capabilities, EngineEvent, EngineRequest, RuntimeBuild};
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{MessageEvent, Worker, WorkerOptions, WorkerType};

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

/// A query parameter of the page's URL.
pub fn page_param(name: &str) -> Option<String> {
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

/// What the engine worker has told the page so far.
#[derive(Clone, Debug, PartialEq)]
pub enum EngineState {
    Starting,
    Ready(Capabilities),
    Failed(String),
}

/// What a request's events go to, until the one that ends it.
type ReplyHandler = Box<dyn FnMut(&EngineEvent)>;
/// What every event goes to.
type Listener = Rc<dyn Fn(&EngineEvent)>;

/// The engine worker, as the page's panels share it: it keeps the worker (restarted on the
/// single-threaded build if the threaded one cannot start), gives each request an id, and
/// routes each event to the request it answers and to every listener. What an event means to
/// a panel is the panel's own business: each keeps its state (see `provide_context` in
/// `App`).
#[derive(Clone, Copy)]
pub struct EngineClient {
    /// The runtime build the page loads, and why (it changes if the threaded build cannot start).
    pub choice: RwSignal<BuildChoice>,
    pub state: RwSignal<EngineState>,
    worker: StoredValue<Option<Worker>, LocalStorage>,
    next_id: StoredValue<u32>,
    replies: StoredValue<HashMap<u32, ReplyHandler>, LocalStorage>,
    listeners: StoredValue<Vec<Listener>, LocalStorage>,
}

impl EngineClient {
    pub fn start() -> Self {
        let engine = Self {
            choice: RwSignal::new(choose_build()),
            state: RwSignal::new(EngineState::Starting),
            worker: StoredValue::new_local(None),
            next_id: StoredValue::new(1),
            replies: StoredValue::new_local(HashMap::new()),
            listeners: StoredValue::new_local(Vec::new()),
        };
        engine.start_worker();
        engine
    }

    /// Calls `listener` with every event from the engine worker, for the page's life.
    pub fn listen(&self, listener: impl Fn(&EngineEvent) + 'static) {
        self.listeners.update_value(|listeners| listeners.push(Rc::new(listener)));
    }

    /// Sends the request `make(id)` under a new id, and gives `on_reply` each event answering
    /// it, up to the one that ends it. Returns the id.
    pub fn request(
        &self,
        make: impl FnOnce(u32) -> EngineRequest,
        on_reply: impl FnMut(&EngineEvent) + 'static,
    ) -> u32 {
        let id = self.next_id.get_value();
        self.next_id.set_value(id.wrapping_add(1).max(1));
        self.replies.update_value(|replies| {
            replies.insert(id, Box::new(on_reply));
        });
        self.send(&make(id));
        id
    }

    /// Sends a request that has no answer of its own (loading a model, stopping a reply).
    pub fn send(&self, request: &EngineRequest) {
        let Ok(value) = serde_wasm_bindgen::to_value(request) else { return };
        self.worker.with_value(|worker| {
            if let Some(worker) = worker {
                let _ = worker.post_message(&value);
            }
        });
    }

    /// Gives `event` to the request it answers, then to every listener. Neither table is
    /// borrowed while a handler runs, so a handler may send requests of its own.
    fn route(&self, event: &EngineEvent) {
        if let Some(id) = event.request_id() {
            let mut handler = None;
            self.replies.update_value(|replies| handler = replies.remove(&id));
            if let Some(mut handler) = handler {
                handler(event);
                if !event.ends_request() {
                    self.replies.update_value(|replies| {
                        replies.insert(id, handler);
                    });
                }
            }
        }
        let listeners = self.listeners.with_value(Vec::clone);
        for listener in listeners {
            listener(event);
        }
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

        let engine = *self;
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            match serde_wasm_bindgen::from_value::<EngineEvent>(event.data()) {
                Ok(event) => {
                    match &event {
                        EngineEvent::Ready { capabilities } => {
                            engine.state.set(EngineState::Ready(capabilities.clone()))
                        }
                        EngineEvent::Error { message } => engine.failed(build, message.clone()),
                        _ => {}
                    }
                    engine.route(&event);
                }
                Err(e) => engine.state.set(EngineState::Failed(format!("unreadable message from the engine: {e}"))),
            }
        });
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        on_message.forget();

        let engine = *self;
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
}
