//! The app open in a web engine (headless Chromium, or Servo when built in), driven by scripts:
//! what `--engine chromium|servo` runs the engine in. Everything is built on one primitive,
//! [`Page::eval`], so both engines share how a generation is started, streamed and collected.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use hearth_api::protocol::AgentModule;
use hearth_core::engine::{Completion, GenerateParams, Prompt};
use serde_json::{Value, json};
use thiserror::Error;
use tokio::sync::mpsc::UnboundedSender;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Error)]
pub enum PageError {
    #[error("{engine}: {message}")]
    Engine { engine: &'static str, message: String },
    #[error("the page's script failed: {0}")]
    Script(String),
    #[error("the page did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the model did not load in the page: {0}")]
    Model(String),
}

/// A page of the app in a web engine.
pub trait Page: Send + Sync {
    /// The engine's name, for messages and `--engine`.
    fn engine(&self) -> &'static str;
    /// Runs `script`, the body of a synchronous JS function of `args`, and returns what it
    /// returns (JSON-serialisable).
    fn eval<'a>(&'a self, script: &'a str, args: Value) -> BoxFuture<'a, Result<Value, PageError>>;
}

/// How often a waiting script is polled: short, as a stream's deltas wait on it.
const POLL: Duration = Duration::from_millis(25);

/// Runs `body`, the body of an async JS function of `args`, and returns its result.
pub async fn run(page: &dyn Page, body: &str, args: Value, limit: Duration) -> Result<Value, PageError> {
    let start = format!(
        "const job = {{ done: false }}; window.__hearthJobs = window.__hearthJobs || []; \
         const id = window.__hearthJobs.push(job) - 1; \
         (async (args) => {{ {body} }})(args) \
           .then(value => {{ job.done = true; job.value = value; }}, \
                 error => {{ job.done = true; job.error = String(error && error.message || error); }}); \
         return id;"
    );
    let id = page.eval(&start, args).await?;
    let deadline = Instant::now() + limit;
    loop {
        let job = page
            .eval(
                "const job = window.__hearthJobs[args]; \
                 if (job.done) window.__hearthJobs[args] = null; return job;",
                id.clone(),
            )
            .await?;
        if job["done"] == Value::Bool(true) {
            return match job.get("error") {
                Some(error) => Err(PageError::Script(error.as_str().unwrap_or_default().to_string())),
                None => Ok(job.get("value").cloned().unwrap_or(Value::Null)),
            };
        }
        if Instant::now() > deadline {
            return Err(PageError::Timeout(limit));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the page's engine has loaded the model; says why when it did not. Returns the
/// backend it runs on (`gpu` or `cpu`).
pub async fn wait_for_model(page: &dyn Page, limit: Duration) -> Result<String, PageError> {
    let state = run(
        page,
        "while (!window.hearth || !['loaded', 'failed'].includes(hearth.modelState())) \
           await new Promise(r => setTimeout(r, 50)); \
         if (hearth.modelState() === 'loaded') return { backend: hearth.backend() }; \
         const engine = document.getElementById('engine-status'); \
         if (engine && engine.classList.contains('err')) return { failed: 'the engine failed: ' + engine.textContent }; \
         const status = document.getElementById('model-status'); \
         return { failed: status ? status.textContent : 'failed' };",
        Value::Null,
        limit,
    )
    .await?;
    match state["backend"].as_str() {
        Some(backend) => Ok(backend.to_string()),
        None => Err(PageError::Model(state["failed"].as_str().unwrap_or("failed").to_string())),
    }
}

/// What the page says about itself: isolation, the runtime build it loaded and its threads
/// (from the app's first screen), the WebGPU adapter (and whether it has `shader-f16`, which
/// the kernels then use).
pub async fn capabilities(page: &dyn Page) -> Result<Value, PageError> {
    run(
        page,
        "const gpu = navigator.gpu ? await navigator.gpu.requestAdapter() : null; \
         let adapter = null; \
         if (gpu) { const i = gpu.info || (gpu.requestAdapterInfo ? await gpu.requestAdapterInfo() : {}); \
                    adapter = { vendor: i.vendor || '', architecture: i.architecture || '', \
                                description: i.description || '', \
                                shaderF16: gpu.features.has('shader-f16') }; } \
         const text = id => { const e = document.getElementById(id); return e ? e.textContent : null; }; \
         return { crossOriginIsolated: !!self.crossOriginIsolated, \
                  sharedArrayBuffer: typeof SharedArrayBuffer !== 'undefined', \
                  hardwareConcurrency: navigator.hardwareConcurrency || 1, \
                  runtimeBuild: text('loaded-build'), threads: Number(text('threads')) || null, \
                  webgpu: !!navigator.gpu, adapter };",
        Value::Null,
        Duration::from_secs(60),
    )
    .await
}

/// The page's engine: `context`, the positions of context its model was loaded with, and
/// `monitor`, its latest monitor sample (see `MonitorSample`: its wasm memory, heap and GPU
/// buffers), or null before the first.
pub async fn engine_state(page: &dyn Page) -> Result<Value, PageError> {
    page.eval("return { context: hearth.context(), monitor: hearth.monitor() };", Value::Null).await
}

/// Generates in the page through `window.hearth.generate`, sending the text to `deltas` as it
/// streams. A closed `deltas` (the reader went away) leaves the generation to finish in the
/// page; its result is dropped.
pub async fn generate(
    page: &dyn Page,
    prompt: &Prompt,
    params: &GenerateParams,
    deltas: &UnboundedSender<String>,
    limit: Duration,
) -> Result<Completion, PageError> {
    let args = json!([prompt, params]);
    let id = page
        .eval(
            "window.__hearthStreams = window.__hearthStreams || []; \
             const s = { deltas: [], done: null }; const id = window.__hearthStreams.push(s) - 1; \
             hearth.generate(args[0], args[1], d => { s.deltas.push(d); }) \
               .then(c => { s.done = { ok: c }; }, e => { s.done = { err: String(e && e.message || e) }; }); \
             return id;",
            args,
        )
        .await?;
    let deadline = Instant::now() + limit;
    loop {
        let poll = page
            .eval(
                "const s = window.__hearthStreams[args]; const d = s.deltas.splice(0); \
                 if (s.done) window.__hearthStreams[args] = null; return { d, done: s.done };",
                id.clone(),
            )
            .await?;
        for delta in poll["d"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            let _ = deltas.send(delta.to_string());
        }
        if let Some(done) = poll.get("done").filter(|d| !d.is_null()) {
            if let Some(err) = done.get("err") {
                return Err(PageError::Script(err.as_str().unwrap_or_default().to_string()));
            }
            return serde_json::from_value(done["ok"].clone())
                .map_err(|e| PageError::Script(format!("the page's completion does not parse: {e}")));
        }
        if Instant::now() > deadline {
            return Err(PageError::Timeout(limit));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Runs a workflow in the page through `window.hearth.runWorkflow`, sending each transcript
/// line to `lines` as it comes.
pub async fn run_workflow(
    page: &dyn Page,
    toml: &str,
    seed: Option<u64>,
    modules: &[AgentModule],
    lines: &mut dyn FnMut(&str),
    limit: Duration,
) -> Result<(), PageError> {
    use base64::Engine as _;
    // Bytes cross the WebDriver boundary as base64 text.
    let modules: serde_json::Map<String, Value> = modules
        .iter()
        .map(|m| (m.path.clone(), Value::String(base64::engine::general_purpose::STANDARD.encode(&m.wasm))))
        .collect();
    let id = page
        .eval(
            "window.__hearthRuns = window.__hearthRuns || []; \
             const r = { lines: [], done: null }; const id = window.__hearthRuns.push(r) - 1; \
             const modules = Object.fromEntries(Object.entries(args[2]) \
               .map(([path, b64]) => [path, Uint8Array.from(atob(b64), c => c.charCodeAt(0))])); \
             hearth.runWorkflow(args[0], args[1], l => { r.lines.push(l); }, modules) \
               .then(() => { r.done = { ok: true }; }, e => { r.done = { err: String(e && e.message || e) }; }); \
             return id;",
            json!([toml, seed, modules]),
        )
        .await?;
    let deadline = Instant::now() + limit;
    loop {
        let poll = page
            .eval(
                "const r = window.__hearthRuns[args]; const l = r.lines.splice(0); \
                 if (r.done) window.__hearthRuns[args] = null; return { l, done: r.done };",
                id.clone(),
            )
            .await?;
        poll["l"].as_array().into_iter().flatten().filter_map(Value::as_str).for_each(&mut *lines);
        if let Some(done) = poll.get("done").filter(|d| !d.is_null()) {
            return match done.get("err") {
                Some(err) => Err(PageError::Script(err.as_str().unwrap_or_default().to_string())),
                None => Ok(()),
            };
        }
        if Instant::now() > deadline {
            return Err(PageError::Timeout(limit));
        }
        tokio::time::sleep(POLL).await;
    }
}

impl Page for crate::chromium::Browser {
    fn engine(&self) -> &'static str {
        "chromium"
    }

    fn eval<'a>(&'a self, script: &'a str, args: Value) -> BoxFuture<'a, Result<Value, PageError>> {
        Box::pin(async move {
            let script = format!("const args = arguments[0]; {script}");
            self.client
                .execute(&script, vec![args])
                .await
                .map_err(|e| PageError::Engine { engine: "chromium", message: e.to_string() })
        })
    }
}
