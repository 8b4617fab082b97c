//! `hearth tokenize`, `hearth generate` and `hearth run`: the engine on the command line, natively.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use hearth_agents::{RunError, RunOptions, Workflow, WorkflowError};
use hearth_api::catalog::{DEFAULT_MODEL, models_dir, shipped_model};
use hearth_core::chat_template::ChatMessage;
use hearth_core::engine::{
    Backend, BackendChoice, Completion, Engine, EngineError, GenerateParams, Prompt, native_clock,
};
use hearth_core::gguf::{Gguf, GgufError};
use hearth_core::kernels::gpu::{GpuContext, GpuOptions};
use hearth_core::mapped_file::MappedFile;
use hearth_core::memory_plan::{DoesNotFit, MemoryPlan};
use hearth_core::tokenizer::{Tokenizer, TokenizerError};
use serde::Serialize;
use thiserror::Error;

/// Everything that can go wrong on the command line; each is one line on stderr and exit code 2.
#[derive(Debug, Error)]
pub enum CliError {
    #[error("cannot open the model {path}: {source} (run scripts/fetch-model.sh for the default model)")]
    OpenModel { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Gguf { path: PathBuf, source: GgufError },
    #[error("{path}: {source}")]
    Tokenizer { path: PathBuf, source: TokenizerError },
    #[error("{path}: {source}")]
    Engine { path: PathBuf, source: EngineError },
    #[error("{path}: {source}")]
    DoesNotFit { path: PathBuf, source: Box<DoesNotFit> },
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
    #[error("the engine's thread: {0}")]
    EngineThread(String),
    #[error("cannot read the workflow {path}: {source}")]
    ReadWorkflow { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Workflow { path: PathBuf, source: WorkflowError },
    #[error("{path}: {source}")]
    Run { path: PathBuf, source: RunError },
    #[error("{path}: {message}")]
    Schema { path: PathBuf, message: String },
}

/// A JSON Schema from a file, checked for what constrained decoding supports.
pub fn read_schema(path: &Path) -> Result<serde_json::Value, CliError> {
    let error = |message: String| CliError::Schema { path: path.to_owned(), message };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let schema = serde_json::from_str(&text).map_err(|e| error(e.to_string()))?;
    hearth_core::constraint::Grammar::from_schema(&schema).map_err(|e| error(e.to_string()))?;
    Ok(schema)
}

/// The model to use: `--model PATH`, or the id of a shipped model (`gemma-3-270m-q4_k_m`)
/// for its file in the cache, else the default model in the cache.
pub fn model_path(model: Option<PathBuf>) -> PathBuf {
    match model {
        None => models_dir().join(DEFAULT_MODEL.file),
        Some(path) => match path.to_str().and_then(shipped_model) {
            Some(entry) if !path.exists() => models_dir().join(entry.file),
            _ => path,
        },
    }
}

/// Positions of context when `--ctx` is not given (or the model's own, if smaller).
pub const DEFAULT_CONTEXT: usize = 4096;

fn open(path: &Path) -> Result<MappedFile, CliError> {
    MappedFile::open(path).map_err(|source| CliError::OpenModel { path: path.to_owned(), source })
}

/// Bytes of memory this machine can give a new model without swapping: Linux's
/// `MemAvailable`, or `None` where it cannot be read (then nothing is refused).
pub fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Refuses a model that cannot fit this machine's available memory on the backend it would
/// run on, from its header alone, before any weight is read. A hardware GPU's memory cannot be
/// asked through wgpu, so only a software adapter's (host memory) is checked.
fn check_fits(
    path: &Path,
    file: &MappedFile,
    n_ctx: usize,
    gpu: &Result<Rc<GpuContext>, String>,
) -> Result<(), CliError> {
    let Some(available) = available_memory() else { return Ok(()) };
    let g = Gguf::read(file).map_err(|source| CliError::Gguf { path: path.to_owned(), source })?;
    let engine_error = |source: EngineError| CliError::Engine { path: path.to_owned(), source };
    let backend = match gpu {
        Ok(ctx) if ctx.adapter().device_type != "Cpu" => return Ok(()),
        Ok(_) => Backend::Gpu,
        Err(_) => Backend::Cpu,
    };
    let plan = MemoryPlan::new(&g, backend, n_ctx).map_err(|e| engine_error(e.into()))?;
    plan.check(available, "this machine's available memory")
        .map_err(|source| CliError::DoesNotFit { path: path.to_owned(), source: Box::new(source) })
}

/// The GPU for `choice`, or why there is none. `Auto` takes only hardware: a software Vulkan
/// device (Mesa's lavapipe) is slower than the CPU backend, so it is used only when asked for.
/// `HEARTH_SHADER_F16=off` keeps every kernel in f32 on an adapter with `shader-f16` (as a
/// browser whose adapter lacks it runs them).
pub fn open_gpu(choice: BackendChoice) -> Result<Rc<GpuContext>, String> {
    if choice == BackendChoice::Cpu {
        return Err("the CPU backend was asked for".into());
    }
    let shader_f16 = !matches!(std::env::var("HEARTH_SHADER_F16").as_deref(), Ok("off" | "0" | "false"));
    let ctx = pollster::block_on(GpuContext::with_options(GpuOptions { shader_f16 })).map_err(|e| e.to_string())?;
    if choice == BackendChoice::Auto && ctx.adapter().device_type == "Cpu" {
        return Err(format!("the only adapter, {:?}, is a software renderer", ctx.adapter().name));
    }
    Ok(Rc::new(ctx))
}

/// Loads `model` onto the backend `choice` names, saying on stderr where it runs when that
/// is not what `auto` would hope for.
/// A model that cannot fit in memory is refused first, with the numbers.
pub fn load_engine(model: &Path, n_ctx: usize, choice: BackendChoice) -> Result<Engine, CliError> {
    let file = open(model)?;
    let gpu = open_gpu(choice);
    check_fits(model, &file, n_ctx, &gpu)?;
    let engine = Engine::load_on(&file, n_ctx, native_clock, choice, gpu)
        .map_err(|source| CliError::Engine { path: model.to_owned(), source })?;
    if let Some(note) = engine.backend_note() {
        eprintln!("hearth: running on the CPU: {note}");
    }
    Ok(engine)
}

/// The token ids of `text` as a JSON array.
pub fn tokenize(model: &Path, text: &str, special: bool) -> Result<String, CliError> {
    let file = open(model)?;
    let g = Gguf::read(&file).map_err(|source| CliError::Gguf { path: model.to_owned(), source })?;
    let tokenizer =
        Tokenizer::from_gguf(&g).map_err(|source| CliError::Tokenizer { path: model.to_owned(), source })?;
    let ids = tokenizer.encode(text, special, special);
    Ok(serde_json::to_string(&ids).expect("a list of integers serialises"))
}

/// What `hearth generate --json` prints.
#[derive(Serialize)]
struct JsonCompletion<'a> {
    #[serde(flatten)]
    completion: &'a Completion,
    prefill_tokens_per_s: f64,
    decode_tokens_per_s: f64,
    backend: &'a str,
    /// Positions of context the KV cache held, where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<usize>,
    /// The most the process that ran the model had resident at once, where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    peak_rss_bytes: Option<u64>,
    /// In a page: what its engine worker holds (its latest monitor sample: `wasm_bytes`, the
    /// most its linear memory has grown to; `heap_bytes`, in use in it; `gpu_bytes`, its GPU
    /// buffers).
    #[serde(skip_serializing_if = "Option::is_none")]
    page_memory: Option<&'a serde_json::Value>,
}

/// The most memory this process has had resident at once: Linux's `VmHWM`.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `completion` as the one line `hearth generate --json` prints, with its speeds, where it ran,
/// its context, and natively the process's peak memory, in a page its engine's memory.
pub fn completion_json(
    completion: &Completion,
    backend: &str,
    context: Option<usize>,
    peak_rss_bytes: Option<u64>,
    page_memory: Option<&serde_json::Value>,
) -> String {
    let t = completion.timings;
    let per_s = |n: usize, ms: f64| if ms > 0.0 { n as f64 * 1000.0 / ms } else { 0.0 };
    let record = JsonCompletion {
        completion,
        prefill_tokens_per_s: per_s(t.prefill_tokens, t.prefill_ms),
        decode_tokens_per_s: per_s(completion.completion_tokens.saturating_sub(1), t.decode_ms),
        backend,
        context,
        peak_rss_bytes,
        page_memory,
    };
    serde_json::to_string(&record).expect("a completion serialises")
}

/// Generates a completion, streaming the text to `out` as it comes unless `json`, in which
/// case one JSON object is printed at the end.
#[allow(clippy::too_many_arguments)]
pub fn generate(
    model: &Path,
    n_ctx: usize,
    prompt: &str,
    chat: bool,
    params: &GenerateParams,
    backend: BackendChoice,
    json: bool,
    out: &mut dyn Write,
) -> Result<Completion, CliError> {
    let engine_error = |source| CliError::Engine { path: model.to_owned(), source };
    let mut engine = load_engine(model, n_ctx, backend)?;
    if chat && let Some(warning) = engine.chat_template().warning() {
        eprintln!("hearth: {warning}");
    }
    let prompt =
        if chat { Prompt::Chat(vec![ChatMessage::new("user", prompt)]) } else { Prompt::Text(prompt.to_owned()) };
    let mut write_error = None;
    let completion = pollster::block_on(engine.generate(&prompt, params, |delta| {
        if json {
            return ControlFlow::Continue(());
        }
        match out.write_all(delta.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                write_error = Some(e);
                ControlFlow::Break(())
            }
        }
    }))
    .map_err(engine_error)?;
    if let Some(e) = write_error {
        return Err(CliError::Output(e));
    }
    if json {
        let backend = match engine.backend() {
            Backend::Cpu => "cpu",
            Backend::Gpu => "gpu",
        };
        writeln!(out, "{}", completion_json(&completion, backend, Some(engine.context_size()), peak_rss(), None))
            .map_err(CliError::Output)?;
    } else {
        writeln!(out).map_err(CliError::Output)?;
    }
    Ok(completion)
}

/// Runs the workflow in `path` on `model` (natively: agents on threads, talking to the hub over
/// the bus), printing its transcript as JSON lines as it happens. `seed` replaces the
/// workflow's own.
pub fn run_workflow(
    path: &Path,
    model: &Path,
    n_ctx: usize,
    seed: Option<u64>,
    backend: BackendChoice,
    options: RunOptions,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| CliError::ReadWorkflow { path: path.to_owned(), source })?;
    let mut workflow =
        Workflow::from_toml(&text).map_err(|source| CliError::Workflow { path: path.to_owned(), source })?;
    if let Some(seed) = seed {
        workflow.seed = seed;
    }
    let run_error = |source| CliError::Run { path: path.to_owned(), source };
    let programs = hearth_agents::programs(&workflow, path.parent().unwrap_or(Path::new("."))).map_err(run_error)?;
    let mut llm = load_engine(model, n_ctx, backend)?;
    let mut write_error = None;
    let result = hearth_agents::run(&workflow, programs, &mut llm, options, |event| {
        let line = serde_json::to_string(event).unwrap_or_default();
        if write_error.is_none()
            && let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush())
        {
            write_error = Some(e);
        }
    });
    if let Some(e) = write_error {
        return Err(CliError::Output(e));
    }
    result.map(drop).map_err(run_error)
}
