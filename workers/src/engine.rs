//! The engine worker: owns the WebGPU device and the CPU pool, answers the page's requests.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use hearth_api::catalog::{MODEL_CACHE, OPFS_MODELS_DIR};
use hearth_api::probe::{KernelRun, PROBE_COLS, PROBE_ROWS, probe_inputs};
use hearth_api::protocol::{
    Capabilities, EngineEvent, EngineRequest, GpuStatus, KernelOutcome, ModelSource, MonitorSample, RuntimeBuild,
};
use hearth_core::engine::{Backend, BackendChoice, Engine as Llm, GenerateParams, Prompt};
use hearth_core::gguf::SharedBytes;
use hearth_core::kernels::{cpu, gpu::GpuContext};
use hearth_core::tokenizer::Tokenizer;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

use crate::blob_source::BlobSource;

/// How often the engine reports to the monitor.
const MONITOR_INTERVAL_MS: i32 = 500;

const BUILD: RuntimeBuild =
    if cfg!(feature = "threads") { RuntimeBuild::Threaded } else { RuntimeBuild::SingleThreaded };

pub(crate) struct EngineWorker {
    scope: DedicatedWorkerGlobalScope,
    /// The WebGPU device, or why there is none.
    gpu: Result<Rc<GpuContext>, String>,
    /// The chat model, once loaded. Never borrowed across an `await`: a step that waits for
    /// the GPU takes it out and puts it back.
    llm: RefCell<Option<Llm>>,
    /// The model's tokenizer, also while a step has the model out.
    tokenizer: RefCell<Option<Tokenizer>>,
    /// The reply being generated, and whether the page asked to stop it.
    replying: Cell<Option<u32>>,
    stop_requested: Cell<bool>,
    loading: Cell<bool>,
    /// What the monitor's counters have reached (see [`MonitorSample`]).
    pub(crate) counters: RefCell<MonitorSample>,
    /// The workflow running on the model, if one is.
    workflow: RefCell<Option<crate::workflow::Running>>,
}

/// Starts the engine in this worker: opens the GPU (if any), installs the message handler,
/// then posts `Ready` with what it found. The page sends nothing before `Ready`.
#[wasm_bindgen]
pub async fn start_engine_worker() -> Result<(), JsError> {
    let scope: DedicatedWorkerGlobalScope =
        js_sys::global().dyn_into().map_err(|_| JsError::new("the engine must run in a dedicated Web Worker"))?;
    let (gpu, gpu_status) = open_gpu(&scope).await;
    let capabilities = Capabilities { build: BUILD, threads: rayon::current_num_threads(), gpu: gpu_status };
    let engine = Rc::new(EngineWorker {
        scope,
        gpu,
        llm: RefCell::new(None),
        tokenizer: RefCell::new(None),
        replying: Cell::new(None),
        stop_requested: Cell::new(false),
        loading: Cell::new(false),
        counters: RefCell::new(MonitorSample { threads: rayon::current_num_threads(), ..MonitorSample::default() }),
        workflow: RefCell::new(None),
    });

    let handler_engine = Rc::clone(&engine);
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let engine = Rc::clone(&handler_engine);
        wasm_bindgen_futures::spawn_local(async move {
            match serde_wasm_bindgen::from_value::<EngineRequest>(event.data()) {
                Ok(request) => engine.handle(request).await,
                Err(e) => {
                    engine.post(&EngineEvent::Error { message: format!("engine worker: unreadable request: {e}") })
                }
            }
        });
    });
    engine.scope.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The worker lives as long as the page; so does its handler.
    on_message.forget();
    let sampler_engine = Rc::clone(&engine);
    let sampler = Closure::<dyn FnMut()>::new(move || sampler_engine.post_monitor_sample());
    let _ = engine
        .scope
        .set_interval_with_callback_and_timeout_and_arguments_0(sampler.as_ref().unchecked_ref(), MONITOR_INTERVAL_MS);
    sampler.forget();
    engine.post(&EngineEvent::Ready { capabilities });
    Ok(())
}

async fn open_gpu(scope: &DedicatedWorkerGlobalScope) -> (Result<Rc<GpuContext>, String>, GpuStatus) {
    let gpu = js_sys::Reflect::get(&scope.navigator(), &JsValue::from_str("gpu")).unwrap_or(JsValue::UNDEFINED);
    if gpu.is_undefined() || gpu.is_null() {
        let reason: String =
            "navigator.gpu is undefined in the worker: this engine has WebGPU off or unsupported".into();
        return (Err(reason.clone()), GpuStatus::Unavailable { reason });
    }
    match GpuContext::new().await {
        Ok(ctx) => {
            let mut adapter = ctx.adapter().clone();
            if adapter.name.is_empty() {
                adapter.name = browser_adapter_label(&gpu).await.unwrap_or_default();
            }
            (Ok(Rc::new(ctx)), GpuStatus::Available { adapter })
        }
        Err(e) => (Err(e.to_string()), GpuStatus::Unavailable { reason: e.to_string() }),
    }
}

/// Whether an adapter is a software renderer (SwiftShader, lavapipe): the CPU backend beats
/// it, so `auto` passes it over.
fn is_software(adapter: &hearth_core::kernels::gpu::AdapterSummary) -> bool {
    let name = adapter.name.to_lowercase();
    adapter.device_type == "Cpu" || ["swiftshader", "llvmpipe", "lavapipe"].iter().any(|s| name.contains(s))
}

/// wgpu names a browser adapter by `GPUAdapterInfo.description`, which browsers often leave
/// empty; read the info ourselves and fall back to "vendor architecture device".
async fn browser_adapter_label(gpu: &JsValue) -> Option<String> {
    let get = |target: &JsValue, key: &str| js_sys::Reflect::get(target, &JsValue::from_str(key)).ok();
    let request: js_sys::Function = get(gpu, "requestAdapter")?.dyn_into().ok()?;
    let promise: js_sys::Promise = request.call0(gpu).ok()?.dyn_into().ok()?;
    let adapter = wasm_bindgen_futures::JsFuture::from(promise).await.ok()?;
    let info = get(&adapter, "info")?;
    let field = |key| get(&info, key).and_then(|v| v.as_string()).filter(|s| !s.is_empty());
    field("description").or_else(|| {
        let parts: Vec<String> = ["vendor", "architecture", "device"].into_iter().filter_map(field).collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    })
}

impl EngineWorker {
    pub(crate) fn post(&self, event: &EngineEvent) {
        post_event(&self.scope, event);
    }

    fn post_monitor_sample(&self) {
        let mut sample = self.counters.borrow().clone();
        sample.at_ms = self.now_ms();
        let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
        // A shared memory's buffer is a SharedArrayBuffer: read its length as a property.
        sample.wasm_bytes = js_sys::Reflect::get(&memory.buffer(), &JsValue::from_str("byteLength"))
            .ok()
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0) as u64;
        sample.heap_bytes = crate::model_fit::allocated();
        sample.gpu_bytes = self.gpu.as_ref().ok().map(|gpu| gpu.storage_bytes());
        sample.gpu_queue = self.gpu.as_ref().ok().map(|gpu| gpu.sample_queue());
        sample.cpu_busy = cpu::pool::busy();
        self.post(&EngineEvent::Monitor { sample });
    }

    /// Counts `tokens` generated in `ms` of computing.
    pub(crate) fn count_work(&self, tokens: usize, ms: f64) {
        let mut counters = self.counters.borrow_mut();
        counters.tokens += tokens as u64;
        counters.busy_ms += ms;
    }

    /// Loading a model, replying, or running a workflow.
    pub(crate) fn busy(&self) -> bool {
        if self.workflow.borrow().is_some() {
            return true;
        }
        self.loading.get() || self.replying.get().is_some()
    }

    /// The model, taken out for a workflow; [`EngineWorker::put_model`] gives it back.
    pub(crate) fn take_model(&self) -> Option<Llm> {
        self.llm.borrow_mut().take()
    }

    pub(crate) fn put_model(&self, llm: Llm) {
        *self.llm.borrow_mut() = Some(llm);
    }

    pub(crate) fn set_workflow(&self, running: Option<crate::workflow::Running>) {
        *self.workflow.borrow_mut() = running;
    }

    pub(crate) fn now_ms(&self) -> f64 {
        self.scope.performance().map_or(0.0, |p| p.now())
    }

    async fn handle(&self, request: EngineRequest) {
        match request {
            EngineRequest::RunKernels => {
                let event = self.run_kernels().await;
                self.post(&event);
            }
            EngineRequest::LoadModel { source, backend, context } => self.load_model(source, backend, context).await,
            EngineRequest::Generate { id, prompt, params } => self.generate(id, prompt, *params).await,
            EngineRequest::Stop { id } => {
                if self.replying.get() == Some(id) {
                    self.stop_requested.set(true);
                }
            }
            EngineRequest::RunWorkflow { id, toml, seed, modules } => {
                crate::workflow::run(self, id, toml, seed, modules).await
            }
            EngineRequest::ControlWorkflow { id, control } => {
                if let Some(running) = self.workflow.borrow().as_ref().filter(|r| r.id == id) {
                    running.control(control);
                }
            }
            EngineRequest::ProfileStep { id } => {
                let event = match self.profile_step().await {
                    Ok(ops) => EngineEvent::StepProfile { id, ops },
                    Err(message) => EngineEvent::Failed { id, message },
                };
                self.post(&event);
            }
            #[cfg(feature = "threads")]
            EngineRequest::BenchBus { id } => {
                let event = match crate::bus_bench::run(self).await {
                    Ok(figures) => EngineEvent::BusBenchDone { id, figures },
                    Err(message) => EngineEvent::Failed { id, message },
                };
                self.post(&event);
            }
            #[cfg(not(feature = "threads"))]
            EngineRequest::BenchBus { id } => {
                self.post(&EngineEvent::Failed { id, message: "the shared-memory bus needs the threaded build".into() })
            }
            EngineRequest::DestroyGpu => {
                if let Ok(gpu) = &self.gpu {
                    gpu.destroy();
                }
            }
            EngineRequest::Tokenize { id, text, special } => {
                let event = match self.tokenizer.borrow().as_ref() {
                    Some(tokenizer) => EngineEvent::Tokens { id, ids: tokenizer.encode(&text, special, special) },
                    None => EngineEvent::Failed { id, message: "no model is loaded yet".into() },
                };
                self.post(&event);
            }
        }
    }

    /// Reads the model file (from the model cache, the network or OPFS) and loads it onto
    /// `backend` tensor by tensor (see [`BlobSource`]).
    async fn load_model(&self, source: ModelSource, backend: BackendChoice, n_ctx: usize) {
        if self.busy() {
            return self.post(&EngineEvent::ModelFailed {
                source,
                message: "the engine is busy loading, replying or running a workflow".into(),
            });
        }
        self.loading.set(true);
        let start = self.now_ms();
        let gpu = match (&self.gpu, backend) {
            (Ok(ctx), BackendChoice::Auto) if is_software(ctx.adapter()) => {
                Err(format!("the only adapter, {:?}, is a software renderer", ctx.adapter().name))
            }
            (gpu, _) => gpu.clone(),
        };
        let planned = if backend != BackendChoice::Cpu && gpu.is_ok() { Backend::Gpu } else { Backend::Cpu };
        match self.check_fits(&source, n_ctx, planned).await {
            Ok(Some(plan)) => self.post(&EngineEvent::ModelPlan { source: source.clone(), plan: plan.to_string() }),
            Ok(None) => {}
            Err(message) => {
                self.loading.set(false);
                let message = format!("{source}: {message}");
                return self.post(&EngineEvent::ModelFailed { source, message });
            }
        }
        let read =
            read_model(&self.scope, &source, |loaded, total| self.post(&EngineEvent::ModelProgress { loaded, total }))
                .await;
        let result = match read {
            Ok((blob, from_cache)) => {
                let size = blob.size() as u64;
                self.load_blob(blob, n_ctx, backend, gpu)
                    .await
                    .map(|llm| (llm, size, from_cache))
                    .map_err(|e| (format!("{source}: {e}"), from_cache))
            }
            Err(e) => Err(e),
        };
        // A cached copy that does not load is dropped, so the next try fetches it afresh.
        let result = match result {
            Err((message, true)) => {
                let dropped = match (open_model_cache(&self.scope).await, &source) {
                    (Ok(cache), ModelSource::Url { url }) => JsFuture::from(cache.delete_with_str(url)).await.is_ok(),
                    _ => false,
                };
                let what = if dropped { "removed from" } else { "still in" };
                Err(format!("{message} (read from the browser's model cache; the copy is {what} the cache)"))
            }
            other => other.map_err(|(message, _)| message),
        };
        self.loading.set(false);
        match result {
            Ok((llm, bytes, from_cache)) => {
                let context = llm.context_size();
                let (backend, backend_note) = (llm.backend(), llm.backend_note().map(str::to_owned));
                *self.tokenizer.borrow_mut() = Some(llm.tokenizer().clone());
                *self.llm.borrow_mut() = Some(llm);
                self.counters.borrow_mut().model_bytes = bytes;
                let ms = self.now_ms() - start;
                self.post(&EngineEvent::ModelLoaded { source, bytes, context, ms, backend, backend_note, from_cache });
            }
            Err(message) => self.post(&EngineEvent::ModelFailed { source, message }),
        }
    }

    /// Loads the model in `blob` a tensor at a time through a [`BlobSource`]; where this
    /// engine has no `FileReaderSync`, from the whole file read into memory, where the CPU's
    /// weights then stay (no second copy).
    async fn load_blob(
        &self,
        blob: web_sys::Blob,
        n_ctx: usize,
        backend: BackendChoice,
        gpu: Result<Rc<GpuContext>, String>,
    ) -> Result<Llm, String> {
        let total = blob.size() as u64;
        let Ok(src) = BlobSource::new(blob.clone()) else {
            let bytes = JsFuture::from(blob.array_buffer()).await.map_err(|e| js_error_text(&e))?;
            let bytes = js_sys::Uint8Array::new(&bytes);
            let mut copy = Vec::new();
            copy.try_reserve_exact(bytes.length() as usize).map_err(|_| no_room(total))?;
            copy.resize(bytes.length() as usize, 0);
            bytes.copy_to(&mut copy);
            return Llm::load_on(&SharedBytes::new(copy), n_ctx, worker_clock, backend, gpu).map_err(|e| e.to_string());
        };
        let (scope, reported) = (self.scope.clone(), Cell::new(0u64));
        src.report_progress(move |loaded| {
            if loaded - reported.get() >= PROGRESS_STEP || loaded == total {
                reported.set(loaded);
                post_event(&scope, &EngineEvent::ModelProgress { loaded, total: Some(total) });
            }
        });
        let llm = Llm::load_on(&src, n_ctx, worker_clock, backend, gpu);
        src.stop_reporting();
        llm.map_err(|e| e.to_string())
    }

    /// Refuses a model this page cannot hold, from its header (see [`crate::model_fit`]), read
    /// from where the load would read the file: the model cache, the network (a range
    /// request), or OPFS.
    async fn check_fits(
        &self,
        source: &ModelSource,
        n_ctx: usize,
        backend: Backend,
    ) -> Result<Option<hearth_core::memory_plan::MemoryPlan>, String> {
        let scope = &self.scope;
        let open = async |want: u64| -> Option<(web_sys::Response, u64)> {
            match source {
                ModelSource::Url { url } | ModelSource::Session { url } => {
                    if matches!(source, ModelSource::Url { .. })
                        && let Ok(cache) = open_model_cache(scope).await
                        && let Some(hit) =
                            JsFuture::from(cache.match_with_str(url)).await.ok().filter(|r| !r.is_undefined())
                    {
                        let hit: web_sys::Response = hit.unchecked_into();
                        let total = content_length(&hit)?;
                        return Some((hit, total));
                    }
                    let init = web_sys::RequestInit::new();
                    let headers = web_sys::Headers::new().ok()?;
                    headers.set("Range", &format!("bytes=0-{}", want - 1)).ok()?;
                    init.set_headers(&headers);
                    let response: web_sys::Response =
                        JsFuture::from(scope.fetch_with_str_and_init(url, &init)).await.ok()?.unchecked_into();
                    let total = match response.status() {
                        // "bytes 0-N/TOTAL"
                        206 => response.headers().get("content-range").ok()??.rsplit('/').next()?.parse().ok()?,
                        200 => content_length(&response)?,
                        _ => return None,
                    };
                    Some((response, total))
                }
                ModelSource::Stored { name } => {
                    let file = stored_file(scope, name).await.ok()?;
                    let head = file.slice_with_f64_and_f64(0.0, want as f64).ok()?;
                    Some((web_sys::Response::new_with_opt_blob(Some(&head)).ok()?, file.size() as u64))
                }
            }
        };
        crate::model_fit::check(open, n_ctx, backend).await
    }

    /// Generates one token at a time, posting each delta, and yields to the event loop
    /// between tokens so a `Stop` can arrive. The model is out of `self.llm` while a step
    /// awaits the GPU, and back between steps.
    async fn generate(&self, id: u32, prompt: Prompt, params: GenerateParams) {
        if self.busy() {
            return self.post(&EngineEvent::Failed {
                id,
                message: "the engine is busy loading, replying or running a workflow".into(),
            });
        }
        let Some(mut llm) = self.llm.borrow_mut().take() else {
            return self.post(&EngineEvent::Failed { id, message: "no model is loaded yet".into() });
        };
        self.replying.set(Some(id));
        self.stop_requested.set(false);
        let backend = llm.backend();
        let result = self.reply(&mut llm, id, &prompt, &params).await;
        if llm.backend() != backend {
            self.post(&EngineEvent::BackendChanged {
                backend: llm.backend(),
                note: llm.backend_note().map(str::to_owned),
            });
        }
        *self.llm.borrow_mut() = Some(llm);
        self.replying.set(None);
        match result {
            Ok(completion) => self.post(&EngineEvent::Done { id, completion }),
            Err(message) => self.post(&EngineEvent::Failed { id, message }),
        }
    }

    async fn reply(
        &self,
        llm: &mut Llm,
        id: u32,
        prompt: &Prompt,
        params: &GenerateParams,
    ) -> Result<hearth_core::engine::Completion, String> {
        let start = self.now_ms();
        let mut generation = llm.start(prompt, params).await.map_err(|e| e.to_string())?;
        self.count_work(0, self.now_ms() - start);
        loop {
            if self.stop_requested.get() {
                generation.cancel();
            }
            if generation.finish_reason().is_some() {
                return Ok(generation.into_completion());
            }
            let start = self.now_ms();
            let text = llm.step(&mut generation).await.map_err(|e| e.to_string())?;
            self.count_work(1, self.now_ms() - start);
            if !text.is_empty() {
                self.post(&EngineEvent::Delta { id, text });
            }
            if llm.backend() == Backend::Cpu {
                // A GPU step awaits its readback, which already lets messages in.
                yield_to_event_loop().await;
            }
        }
    }

    /// Times one decode step of the loaded model op family by op family, at the position the
    /// conversation's next token would take ([`hearth_core::engine::Engine::profile_decode`]).
    async fn profile_step(&self) -> Result<Vec<(String, f64)>, String> {
        if self.busy() {
            return Err("the engine is busy loading, replying or running a workflow".into());
        }
        let Some(mut llm) = self.llm.borrow_mut().take() else { return Err("no model is loaded yet".into()) };
        self.loading.set(true);
        let result = llm.profile_decode(worker_clock).await.map_err(|e| e.to_string());
        self.loading.set(false);
        *self.llm.borrow_mut() = Some(llm);
        result.map(|ops| ops.into_iter().map(|(label, ms)| (label.to_string(), ms)).collect())
    }

    async fn run_kernels(&self) -> EngineEvent {
        let (rows, cols) = (PROBE_ROWS, PROBE_COLS);
        let (w, x) = probe_inputs(rows, cols);
        let gpu = match &self.gpu {
            Err(why) => KernelOutcome::Failed { error: format!("no WebGPU device in this engine: {why}") },
            Ok(ctx) => {
                let start = self.now_ms();
                match ctx.matvec(&w, &x, rows, cols).await {
                    Ok(y) => KernelOutcome::Ran {
                        run: KernelRun::new("webgpu matvec", rows, cols, &y, self.now_ms() - start),
                    },
                    Err(e) => KernelOutcome::Failed { error: e.to_string() },
                }
            }
        };
        let start = self.now_ms();
        let cpu = match cpu::matvec(&w, &x, rows, cols) {
            Ok(y) => {
                KernelOutcome::Ran { run: KernelRun::new("cpu matvec (rayon)", rows, cols, &y, self.now_ms() - start) }
            }
            Err(e) => KernelOutcome::Failed { error: e.to_string() },
        };
        EngineEvent::KernelsDone { gpu, cpu }
    }
}

/// Posts `event` to the page.
fn post_event(scope: &DedicatedWorkerGlobalScope, event: &EngineEvent) {
    match serde_wasm_bindgen::to_value(event) {
        Ok(value) => {
            let _ = scope.post_message(&value);
        }
        Err(e) => web_sys::console::error_1(&format!("engine worker: cannot encode {event:?}: {e}").into()),
    }
}

/// Bytes read between two progress reports: often enough for a progress bar.
const PROGRESS_STEP: u64 = 4 << 20;

/// `performance.now()` of this worker, for the engine's timings.
fn worker_clock() -> f64 {
    js_sys::global().unchecked_into::<web_sys::WorkerGlobalScope>().performance().map_or(0.0, |p| p.now())
}

/// Lets the worker's event loop run (messages from the page) before continuing. A message to
/// ourselves through a `MessageChannel` is a task with no timer clamping, unlike `setTimeout(0)`.
pub(crate) async fn yield_to_event_loop() {
    let Ok(channel) = web_sys::MessageChannel::new() else { return };
    let promise = js_sys::Promise::new(&mut |resolve, _reject| {
        channel.port1().set_onmessage(Some(&resolve));
    });
    if channel.port2().post_message(&JsValue::NULL).is_err() {
        return;
    }
    let _ = JsFuture::from(promise).await;
    channel.port1().set_onmessage(None);
}

/// The page's model cache ([`MODEL_CACHE`]), where this engine has the Cache API.
async fn open_model_cache(scope: &DedicatedWorkerGlobalScope) -> Result<web_sys::Cache, String> {
    // Read as a property: engines without the Cache API (Servo 0.7) leave it undefined.
    let caches = js_sys::Reflect::get(scope, &JsValue::from_str("caches"))
        .ok()
        .filter(|c| !c.is_undefined() && !c.is_null())
        .ok_or_else(|| "this engine has no Cache API".to_string())?;
    let caches: web_sys::CacheStorage = caches.unchecked_into();
    let cache = JsFuture::from(caches.open(MODEL_CACHE))
        .await
        .map_err(|e| format!("cannot open the model cache: {}", js_error_text(&e)))?;
    Ok(cache.unchecked_into())
}

/// Reads the model file at `source`, reporting the download's progress. Returns it as a
/// `Blob` (outside wasm memory) and whether it came from the model cache; an error says
/// whether it did too.
async fn read_model(
    scope: &DedicatedWorkerGlobalScope,
    source: &ModelSource,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<(web_sys::Blob, bool), (String, bool)> {
    match source {
        ModelSource::Url { url } => read_url(scope, url, true, &mut progress).await,
        ModelSource::Session { url } => read_url(scope, url, false, &mut progress).await,
        ModelSource::Stored { name } => Ok((stored_file(scope, name).await.map_err(|e| (e, false))?.into(), false)),
    }
}

/// A file the user added, from the origin private file system.
async fn stored_file(scope: &DedicatedWorkerGlobalScope, name: &str) -> Result<web_sys::File, String> {
    let missing = |e: JsValue| format!("{name} is not stored in this browser: {}", js_error_text(&e));
    let root: web_sys::FileSystemDirectoryHandle =
        JsFuture::from(scope.navigator().storage().get_directory()).await.map_err(missing)?.unchecked_into();
    let dir: web_sys::FileSystemDirectoryHandle =
        JsFuture::from(root.get_directory_handle(OPFS_MODELS_DIR)).await.map_err(missing)?.unchecked_into();
    let handle: web_sys::FileSystemFileHandle =
        JsFuture::from(dir.get_file_handle(name)).await.map_err(missing)?.unchecked_into();
    Ok(JsFuture::from(handle.get_file()).await.map_err(missing)?.unchecked_into())
}

/// Reads the model file at `url`. With `cached`, from the page's model cache when it holds the
/// file, else from the network, then kept in the cache so the next start needs no network;
/// without, from the network (or the `blob:` URL) only.
async fn read_url(
    scope: &DedicatedWorkerGlobalScope,
    url: &str,
    cached: bool,
    progress: &mut impl FnMut(u64, Option<u64>),
) -> Result<(web_sys::Blob, bool), (String, bool)> {
    let cache = if cached { open_model_cache(scope).await } else { Err("read for this session only".to_string()) };
    if let Ok(cache) = &cache {
        let hit = JsFuture::from(cache.match_with_str(url)).await.ok().filter(|r| !r.is_undefined());
        if let Some(response) = hit {
            let response: web_sys::Response = response.unchecked_into();
            return response_blob(&response, url).await.map(|b| (b, true)).map_err(|e| (e, true));
        }
    }
    let fetched: Result<web_sys::Response, String> = match JsFuture::from(scope.fetch_with_str(url)).await {
        Ok(response) => Ok(response.unchecked_into()),
        Err(e) => Err(format!("cannot fetch {url}: {}", js_error_text(&e))),
    };
    let response = fetched.map_err(|e| (e, false))?;
    if !response.ok() {
        return Err((format!("{url}: the server answered {} {}", response.status(), response.status_text()), false));
    }
    // A file opened here is in the browser already; a download is read with its progress.
    let blob = if url.starts_with("blob:") {
        response_blob(&response, url).await
    } else {
        read_body(response, url, progress).await
    };
    let blob = blob.map_err(|e| (e, false))?;
    if let Ok(cache) = &cache {
        let headers = web_sys::Headers::new().map_err(|e| (js_error_text(&e), false))?;
        // What the header check reads a cached copy's size from.
        let _ = headers.set("content-length", &blob.size().to_string());
        let init = web_sys::ResponseInit::new();
        init.set_headers(&headers);
        let copy = web_sys::Response::new_with_opt_blob_and_init(Some(&blob), &init);
        // Not being able to keep a copy (no quota, say) costs only the next start's download.
        if let Err(e) = match copy {
            Ok(copy) => JsFuture::from(cache.put_with_str(url, &copy)).await.map(drop),
            Err(e) => Err(e),
        } {
            web_sys::console::warn_1(&format!("{url} was not kept in the model cache: {}", js_error_text(&e)).into());
        }
    }
    Ok((blob, false))
}

/// A response's whole body as a `Blob`.
async fn response_blob(response: &web_sys::Response, url: &str) -> Result<web_sys::Blob, String> {
    let read = response.blob().map_err(|e| format!("{url}: {}", js_error_text(&e)))?;
    let blob = JsFuture::from(read).await.map_err(|e| format!("{url}: reading failed: {}", js_error_text(&e)))?;
    Ok(blob.unchecked_into())
}

fn content_length(response: &web_sys::Response) -> Option<u64> {
    response.headers().get("content-length").ok().flatten().and_then(|v| v.parse::<u64>().ok())
}

/// The error for a model file of `total` bytes that wasm memory cannot hold whole.
fn no_room(total: u64) -> String {
    format!(
        "the model is {total} bytes but this page's wasm memory could not hold it \
         (wasm32 stops at 4 GiB, and other allocations share it)"
    )
}

/// Reads a response's body as it arrives, reporting progress, into a `Blob`: the chunks stay
/// in the browser's memory, never in wasm memory. `url` names it in errors.
async fn read_body(
    response: web_sys::Response,
    url: &str,
    progress: &mut impl FnMut(u64, Option<u64>),
) -> Result<web_sys::Blob, String> {
    let total = content_length(&response);
    let body = response.body().ok_or_else(|| format!("{url}: the response has no body"))?;
    let reader: web_sys::ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let chunks = js_sys::Array::new();
    let (mut loaded, mut reported) = (0u64, 0u64);
    loop {
        let chunk = JsFuture::from(reader.read())
            .await
            .map_err(|e| format!("{url}: reading failed after {loaded} bytes: {}", js_error_text(&e)))?;
        let done = js_sys::Reflect::get(&chunk, &JsValue::from_str("done")).is_ok_and(|d| d.is_truthy());
        if done {
            break;
        }
        let value = js_sys::Reflect::get(&chunk, &JsValue::from_str("value"))
            .map_err(|_| format!("{url}: a chunk without bytes"))?;
        let array: js_sys::Uint8Array = value.dyn_into().map_err(|_| format!("{url}: a chunk that is not bytes"))?;
        loaded += array.length() as u64;
        chunks.push(&array);
        if loaded - reported >= PROGRESS_STEP {
            progress(loaded, total);
            reported = loaded;
        }
    }
    progress(loaded, total);
    web_sys::Blob::new_with_u8_array_sequence(&chunks).map_err(|e| format!("{url}: {}", js_error_text(&e)))
}

fn js_error_text(e: &JsValue) -> String {
    e.as_string()
        .or_else(|| e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())))
        .unwrap_or_else(|| format!("{e:?}"))
}
