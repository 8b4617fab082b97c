//! The engine worker: owns the WebGPU device and the CPU pool, answers the page's requests.

use std::rc::Rc;

use hearth_core::kernels::{cpu, gpu::GpuContext};
use hearth_core::probe::{KernelRun, PROBE_COLS, PROBE_ROWS, probe_inputs};
use hearth_core::protocol::{Capabilities, EngineEvent, EngineRequest, GpuStatus, KernelOutcome, RuntimeBuild};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

const BUILD: RuntimeBuild =
    if cfg!(feature = "threads") { RuntimeBuild::Threaded } else { RuntimeBuild::SingleThreaded };

struct Engine {
    scope: DedicatedWorkerGlobalScope,
    gpu: Option<GpuContext>,
}

/// Starts the engine in this worker: opens the GPU (if any), installs the message handler,
/// then posts `Ready` with what it found. The page sends nothing before `Ready`.
#[wasm_bindgen]
pub async fn start_engine_worker() -> Result<(), JsError> {
    let scope: DedicatedWorkerGlobalScope =
        js_sys::global().dyn_into().map_err(|_| JsError::new("the engine must run in a dedicated Web Worker"))?;
    let (gpu, gpu_status) = open_gpu(&scope).await;
    let capabilities = Capabilities { build: BUILD, threads: rayon::current_num_threads(), gpu: gpu_status };
    let engine = Rc::new(Engine { scope, gpu });

    let handler_engine = Rc::clone(&engine);
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let engine = Rc::clone(&handler_engine);
        wasm_bindgen_futures::spawn_local(async move {
            let reply = match serde_wasm_bindgen::from_value::<EngineRequest>(event.data()) {
                Ok(request) => engine.handle(request).await,
                Err(e) => EngineEvent::Error { message: format!("engine worker: unreadable request: {e}") },
            };
            engine.post(&reply);
        });
    });
    engine.scope.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The worker lives as long as the page; so does its handler.
    on_message.forget();
    engine.post(&EngineEvent::Ready { capabilities });
    Ok(())
}

async fn open_gpu(scope: &DedicatedWorkerGlobalScope) -> (Option<GpuContext>, GpuStatus) {
    let gpu = js_sys::Reflect::get(&scope.navigator(), &JsValue::from_str("gpu")).unwrap_or(JsValue::UNDEFINED);
    if gpu.is_undefined() || gpu.is_null() {
        let reason = "navigator.gpu is undefined in the worker: this engine has WebGPU off or unsupported".into();
        return (None, GpuStatus::Unavailable { reason });
    }
    match GpuContext::new().await {
        Ok(ctx) => {
            let mut adapter = ctx.adapter().clone();
            if adapter.name.is_empty() {
                adapter.name = browser_adapter_label(&gpu).await.unwrap_or_default();
            }
            (Some(ctx), GpuStatus::Available { adapter })
        }
        Err(e) => (None, GpuStatus::Unavailable { reason: e.to_string() }),
    }
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

impl Engine {
    fn post(&self, event: &EngineEvent) {
        match serde_wasm_bindgen::to_value(event) {
            Ok(value) => {
                let _ = self.scope.post_message(&value);
            }
            Err(e) => web_sys::console::error_1(&format!("engine worker: cannot encode {event:?}: {e}").into()),
        }
    }

    fn now_ms(&self) -> f64 {
        self.scope.performance().map_or(0.0, |p| p.now())
    }

    async fn handle(&self, request: EngineRequest) -> EngineEvent {
        match request {
            EngineRequest::RunKernels => {
                let (rows, cols) = (PROBE_ROWS, PROBE_COLS);
                let (w, x) = probe_inputs(rows, cols);
                let gpu = match &self.gpu {
                    None => KernelOutcome::Failed { error: "no WebGPU device in this engine".into() },
                    Some(ctx) => {
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
                    Ok(y) => KernelOutcome::Ran {
                        run: KernelRun::new("cpu matvec (rayon)", rows, cols, &y, self.now_ms() - start),
                    },
                    Err(e) => KernelOutcome::Failed { error: e.to_string() },
                };
                EngineEvent::KernelsDone { gpu, cpu }
            }
        }
    }
}
