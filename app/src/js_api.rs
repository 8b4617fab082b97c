//! `window.hearth`: the engine for scripts. The same worker the chat screen uses, as
//! promises — what test drivers and the headless launcher call:
//!
//! ```js
//! await hearth.tokenize("Hello", true)                      // [19556]
//! await hearth.generate({ chat: [{ role: "user", content: "Hi" }] },
//!                       { max_tokens: 32, sampler: { temperature: 0 } },
//!                       (delta) => console.log(delta))     // the completion object
//! hearth.modelState()                                       // "loading" | "loaded" | …
//! hearth.backend()                                          // "gpu" | "cpu" once loaded, else ""
//! hearth.context()                                          // positions of context once loaded, else 0
//! hearth.monitor()     // the engine's latest monitor sample (memory, GPU buffers, ...), or null
//! hearth.destroyGpu()  // destroys the engine's WebGPU device (as a driver reset does): the
//!                      // model moves to the CPU at its next step
//! await hearth.runWorkflow(toml, seed, (line) => console.log(line), modules)
//!                      // each transcript line, as `hearth run` prints it; null when it finished;
//!                      // modules (optional): { path: Uint8Array }, the custom agents' .wasm files
//! await hearth.benchBus()  // the agents' bus against postMessage: [{ transport, p50_us, ... }]
//! ```
//!
//! `generate`'s prompt is `{ text: "…" }` or `{ chat: [messages] }`, its parameters those of
//! `GenerateParams`; the promise resolves to the `Completion` or rejects with the engine's error.

use hearth_api::generate::{Backend, GenerateParams, Prompt};
use hearth_api::protocol::{AgentModule, EngineEvent, EngineRequest};
use js_sys::{Function, Object, Promise, Reflect};
use leptos::prelude::*;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::engine_client::{EngineClient, EngineState};
use crate::model::{ModelState, ModelStatus};
use crate::monitor::MonitorHistory;

/// `{ path: bytes }` (a `Uint8Array` or an `ArrayBuffer` each), or nothing.
fn agent_modules(modules: &JsValue) -> Result<Vec<AgentModule>, String> {
    if modules.is_undefined() || modules.is_null() {
        return Ok(Vec::new());
    }
    let Some(modules) = modules.dyn_ref::<Object>() else { return Err("modules: not an object".into()) };
    Object::entries(modules)
        .iter()
        .map(|entry| {
            let entry: js_sys::Array = entry.unchecked_into();
            let path = entry.get(0).as_string().unwrap_or_default();
            let bytes = entry.get(1);
            if !(bytes.is_instance_of::<js_sys::Uint8Array>() || bytes.is_instance_of::<js_sys::ArrayBuffer>()) {
                return Err(format!("module {path}: not a Uint8Array or an ArrayBuffer"));
            }
            Ok(AgentModule { path, wasm: js_sys::Uint8Array::new(&bytes).to_vec() })
        })
        .collect()
}

/// Sends `request(id)` to the engine and returns a promise settled by its answer; `on_delta`
/// gets each streamed piece (a reply's text, a transcript's line).
fn call(engine: &EngineClient, on_delta: Option<Function>, request: impl FnOnce(u32) -> EngineRequest) -> Promise {
    let mut settle = None;
    let promise = Promise::new(&mut |resolve, reject| settle = Some((resolve, reject)));
    let Some((resolve, reject)) = settle else { return promise };
    engine.request(request, move |event| settle_with(event, &resolve, &reject, on_delta.as_ref()));
    promise
}

/// What an event answering a `window.hearth` call does to its promise.
fn settle_with(event: &EngineEvent, resolve: &Function, reject: &Function, on_delta: Option<&Function>) {
    let _ = match event {
        EngineEvent::Delta { text, .. } | EngineEvent::Transcript { line: text, .. } => match on_delta {
            Some(f) => f.call1(&JsValue::NULL, &JsValue::from_str(text)),
            None => Ok(JsValue::UNDEFINED),
        },
        EngineEvent::WorkflowEnded { error: None, .. } => resolve.call1(&JsValue::NULL, &JsValue::NULL),
        EngineEvent::WorkflowEnded { error: Some(message), .. } | EngineEvent::Failed { message, .. } => {
            reject.call1(&JsValue::NULL, &js_sys::Error::new(message).into())
        }
        EngineEvent::Done { completion, .. } => {
            resolve.call1(&JsValue::NULL, &serde_wasm_bindgen::to_value(completion).unwrap_or(JsValue::NULL))
        }
        EngineEvent::BusBenchDone { figures, .. } => {
            resolve.call1(&JsValue::NULL, &serde_wasm_bindgen::to_value(figures).unwrap_or(JsValue::NULL))
        }
        EngineEvent::Tokens { ids, .. } => {
            resolve.call1(&JsValue::NULL, &serde_wasm_bindgen::to_value(ids).unwrap_or(JsValue::NULL))
        }
        _ => Ok(JsValue::UNDEFINED),
    };
}

fn rejected(message: String) -> Promise {
    Promise::reject(&js_sys::Error::new(&message).into())
}

/// Puts `hearth` on `window`.
pub fn install(engine: EngineClient) {
    let status = expect_context::<ModelStatus>();
    let MonitorHistory(samples) = expect_context::<MonitorHistory>();
    let api = Object::new();
    let tokenize = {
        Closure::<dyn Fn(String, JsValue) -> Promise>::new(move |text: String, special: JsValue| {
            let special = special.as_bool().unwrap_or(true);
            call(&engine, None, |id| EngineRequest::Tokenize { id, text, special })
        })
    };
    let generate = {
        Closure::<dyn Fn(JsValue, JsValue, JsValue) -> Promise>::new(
            move |prompt: JsValue, params: JsValue, on_delta: JsValue| {
                let prompt: Prompt = match serde_wasm_bindgen::from_value(prompt) {
                    Ok(prompt) => prompt,
                    Err(e) => {
                        return rejected(format!("hearth.generate: the prompt must be {{text}} or {{chat}}: {e}"));
                    }
                };
                let params: GenerateParams = if params.is_undefined() || params.is_null() {
                    GenerateParams::default()
                } else {
                    match serde_wasm_bindgen::from_value(params) {
                        Ok(params) => params,
                        Err(e) => return rejected(format!("hearth.generate: bad parameters: {e}")),
                    }
                };
                call(&engine, on_delta.dyn_into().ok(), |id| EngineRequest::Generate {
                    id,
                    prompt,
                    params: Box::new(params),
                })
            },
        )
    };
    let run_workflow = {
        Closure::<dyn Fn(String, JsValue, JsValue, JsValue) -> Promise>::new(
            move |toml: String, seed: JsValue, on_line: JsValue, modules: JsValue| {
                let seed = match seed.as_f64() {
                    None => None,
                    Some(s) if s >= 0.0 && s.fract() == 0.0 && s <= 9_007_199_254_740_991.0 => Some(s as u64),
                    Some(s) => return rejected(format!("hearth.runWorkflow: not a seed: {s}")),
                };
                let modules = match agent_modules(&modules) {
                    Ok(modules) => modules,
                    Err(e) => return rejected(format!("hearth.runWorkflow: {e}")),
                };
                call(&engine, on_line.dyn_into().ok(), |id| EngineRequest::RunWorkflow { id, toml, seed, modules })
            },
        )
    };
    let bench_bus =
        { Closure::<dyn Fn() -> Promise>::new(move || call(&engine, None, |id| EngineRequest::BenchBus { id })) };
    let model_state = {
        let (model, state) = (status.state, engine.state);
        Closure::<dyn Fn() -> String>::new(move || {
            // An engine that failed to start will load no model.
            if matches!(state.get_untracked(), EngineState::Failed(_)) {
                return "failed".to_string();
            }
            match model.get_untracked() {
                ModelState::NotLoaded => "not-loaded",
                ModelState::Loading { .. } => "loading",
                ModelState::Loaded { .. } => "loaded",
                ModelState::Failed(_) => "failed",
            }
            .to_string()
        })
    };
    let backend = {
        let model = status.state;
        Closure::<dyn Fn() -> String>::new(move || match model.get_untracked() {
            ModelState::Loaded { backend: Backend::Gpu, .. } => "gpu".to_string(),
            ModelState::Loaded { backend: Backend::Cpu, .. } => "cpu".to_string(),
            _ => String::new(),
        })
    };
    let context = {
        let model = status.state;
        Closure::<dyn Fn() -> usize>::new(move || match model.get_untracked() {
            ModelState::Loaded { context, .. } => context,
            _ => 0,
        })
    };
    let monitor = {
        Closure::<dyn Fn() -> JsValue>::new(move || {
            let json = serde_wasm_bindgen::Serializer::json_compatible();
            samples
                .with_untracked(|s| s.back().and_then(|sample| sample.serialize(&json).ok()))
                .unwrap_or(JsValue::NULL)
        })
    };
    let destroy_gpu = { Closure::<dyn Fn()>::new(move || engine.send(&EngineRequest::DestroyGpu)) };
    for (name, f) in [
        ("tokenize", tokenize.into_js_value()),
        ("generate", generate.into_js_value()),
        ("runWorkflow", run_workflow.into_js_value()),
        ("benchBus", bench_bus.into_js_value()),
        ("modelState", model_state.into_js_value()),
        ("backend", backend.into_js_value()),
        ("context", context.into_js_value()),
        ("monitor", monitor.into_js_value()),
        ("destroyGpu", destroy_gpu.into_js_value()),
    ] {
        let _ = Reflect::set(&api, &name.into(), &f);
    }
    let _ = Reflect::set(&js_sys::global(), &"hearth".into(), &api);
}
