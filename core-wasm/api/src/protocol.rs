//! Messages between the page (Leptos, main thread) and the engine worker. Control traffic
//! only: it travels by `postMessage`; the hot path gets the shared-memory bus.

use serde::{Deserialize, Serialize};

use crate::agents::AgentState;
use crate::generate::{Backend, BackendChoice, Completion, GenerateParams, Prompt};
pub use crate::monitor::AdapterSummary;
use crate::monitor::{GpuQueueStats, PoolBusy};
use crate::probe::KernelRun;

/// The two wasm builds of the runtime; the page picks one at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeBuild {
    /// Shared memory, atomics and a wasm-bindgen-rayon pool of Web Workers.
    Threaded,
    /// No shared memory: for engines (or pages) where SharedArrayBuffer is unavailable.
    SingleThreaded,
}

impl RuntimeBuild {
    /// The folder of the served app that holds this build (`runtime/<dir>/`).
    pub fn dir(self) -> &'static str {
        match self {
            Self::Threaded => "threaded",
            Self::SingleThreaded => "single",
        }
    }

    pub fn from_dir(dir: &str) -> Option<Self> {
        [Self::Threaded, Self::SingleThreaded].into_iter().find(|b| b.dir() == dir)
    }
}

/// Whether the engine worker got a WebGPU device, and if not, why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum GpuStatus {
    Available { adapter: AdapterSummary },
    Unavailable { reason: String },
}

/// What the engine worker found when it started.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    pub build: RuntimeBuild,
    /// Threads in the rayon pool (1 in the single-threaded build).
    pub threads: usize,
    pub gpu: GpuStatus,
}

/// Where the engine worker reads a model file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ModelSource {
    /// A URL relative to the app (a shipped model under `models/`); kept in the model cache
    /// ([`crate::catalog::MODEL_CACHE`]) so the next start needs no network.
    Url { url: String },
    /// A URL read for this session only, never cached: a `blob:` URL of a file the user opened
    /// where there is no OPFS, or a file the launcher serves under `models/` from its command
    /// line (`hearth --model FILE --engine chromium|servo`).
    Session { url: String },
    /// A file the user added, in the origin private file system under
    /// [`crate::catalog::OPFS_MODELS_DIR`].
    Stored { name: String },
}

impl std::fmt::Display for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Url { url } | Self::Session { url } => f.write_str(url),
            Self::Stored { name } => write!(f, "{name} (stored in this browser)"),
        }
    }
}

/// Positions of context a page loads its model with unless told (`?ctx=`): a conversation's
/// worth, with a KV cache small enough for a 3B model beside its weights in wasm32's 4 GiB.
pub const PAGE_CONTEXT: usize = 2048;

fn page_context() -> usize {
    PAGE_CONTEXT
}

/// Page → engine worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum EngineRequest {
    /// Run the kernel probe (see [`crate::probe`]) on the GPU and on the CPU pool.
    RunKernels,
    /// Read the GGUF file at `source` and load it for chat, onto the
    /// backend `backend` names (auto: a hardware GPU if there is one and the model fits).
    LoadModel {
        source: ModelSource,
        #[serde(default)]
        backend: BackendChoice,
        /// Positions of context (the KV cache's size); at most the model's own.
        #[serde(default = "page_context")]
        context: usize,
    },
    /// Complete a prompt or reply to a conversation; the text streams back as
    /// [`EngineEvent::Delta`]s, then [`EngineEvent::Done`] or [`EngineEvent::Failed`].
    Generate { id: u32, prompt: Prompt, params: Box<GenerateParams> },
    /// Stop generation `id` where it is.
    Stop { id: u32 },
    /// The loaded model's token ids for `text`, with special tokens parsed and BOS/EOS added
    /// as the model asks when `special`; answered by [`EngineEvent::Tokens`].
    Tokenize { id: u32, text: String, special: bool },
    /// Destroy the engine's WebGPU device, as a driver reset or a crashed GPU process does:
    /// the model moves to the CPU, reloaded from where it was read (the model cache or OPFS).
    /// For trying that path; the device does not come back.
    DestroyGpu,
    /// Run the workflow in `toml` (see `hearth_agents::Workflow`) on the loaded model, each
    /// agent in a Web Worker of its own over the shared-memory bus; `seed` replaces the
    /// workflow's; `modules` are the custom agents' wasm files it names. Its transcript streams
    /// back as [`EngineEvent::Transcript`] lines, live agent states as
    /// [`EngineEvent::AgentState`], and it ends with [`EngineEvent::WorkflowEnded`].
    RunWorkflow {
        id: u32,
        toml: String,
        seed: Option<u64>,
        #[serde(default)]
        modules: Vec<AgentModule>,
    },
    /// Pause, resume, single-step or stop workflow `id` (at its next logical step).
    ControlWorkflow { id: u32, control: WorkflowControl },
    /// Time one decode step of the model op family by op family, on the backend it runs on;
    /// answered by [`EngineEvent::StepProfile`] or [`EngineEvent::Failed`].
    ProfileStep { id: u32 },
    /// Measure the agents' bus against `postMessage` between this worker and another;
    /// answered by [`EngineEvent::BusBenchDone`] or [`EngineEvent::Failed`].
    BenchBus { id: u32 },
}

/// One transport's figures: one-way latency (half a round trip) and messages per second
/// streamed one way, 64-byte messages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BusFigures {
    pub transport: String,
    pub p50_us: f64,
    pub p99_us: f64,
    pub messages_per_s: f64,
}

/// What the page can ask of a running workflow. A paused workflow holds before its next
/// logical step; `Step` lets one step run and holds again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkflowControl {
    Pause,
    Resume,
    Step,
    Stop,
}

/// A kernel that ran, or the reason it could not.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum KernelOutcome {
    Ran { run: KernelRun },
    Failed { error: String },
}

/// What the monitor shows, sampled by the engine worker twice a second. Counters only grow;
/// the page turns them into rates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MonitorSample {
    /// The worker's clock (ms).
    pub at_ms: f64,
    /// The runtime's linear memory: the wasm heap (in the threaded build shared by the engine,
    /// its thread pool and the agents).
    pub wasm_bytes: u64,
    /// Of `wasm_bytes`, what the runtime's allocator has given out and not had back.
    #[serde(default)]
    pub heap_bytes: u64,
    /// The loaded model file.
    pub model_bytes: u64,
    /// Live GPU storage buffers (weights, activations, KV caches), where there is a device.
    pub gpu_bytes: Option<u64>,
    /// Tokens the engine has generated (chat and agents).
    pub tokens: u64,
    /// Milliseconds the engine has spent computing (prefill and decode).
    pub busy_ms: f64,
    /// Messages and bytes the hub has taken off the agents' bus.
    pub bus_messages: u64,
    pub bus_bytes: u64,
    /// Threads the engine computes on.
    pub threads: usize,
    /// The GPU's task queue (command buffers submitted, in flight), where there is a device.
    #[serde(default)]
    pub gpu_queue: Option<GpuQueueStats>,
    /// Busy milliseconds so far of each CPU pool thread, and of work outside the pool.
    #[serde(default)]
    pub cpu_busy: PoolBusy,
}

/// A custom agent's wasm module, as the page has it: the workflow names it by `path`; the page
/// matches that path, or else its file name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentModule {
    pub path: String,
    /// Sent as a `Uint8Array`.
    #[serde(with = "serde_bytes")]
    pub wasm: Vec<u8>,
}

impl AgentModule {
    /// The module among `modules` that a workflow names `path`: the same path, else the only
    /// one with the same file name.
    pub fn find<'a>(modules: &'a [AgentModule], path: &str) -> Option<&'a AgentModule> {
        let file_name = |p: &str| p.rsplit(['/', '\\']).next().unwrap_or(p).to_string();
        modules.iter().find(|m| m.path == path).or_else(|| {
            let mut same_name = modules.iter().filter(|m| file_name(&m.path) == file_name(path));
            match (same_name.next(), same_name.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            }
        })
    }
}

/// Engine worker → page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum EngineEvent {
    Ready {
        capabilities: Capabilities,
    },
    KernelsDone {
        gpu: KernelOutcome,
        cpu: KernelOutcome,
    },
    /// What the model being loaded needs in memory, from its header, before its weights are
    /// read (see `hearth_core::memory_plan::MemoryPlan`'s display).
    ModelPlan {
        source: ModelSource,
        plan: String,
    },
    /// Bytes of the model read so far, and the total when the server said it.
    ModelProgress {
        loaded: u64,
        total: Option<u64>,
    },
    ModelLoaded {
        source: ModelSource,
        bytes: u64,
        context: usize,
        ms: f64,
        backend: Backend,
        /// Why it runs on the CPU although a GPU was there, if it does.
        backend_note: Option<String>,
        /// Read from the page's model cache rather than the network.
        from_cache: bool,
    },
    /// The model moved to another backend mid-session (the GPU device was lost); the
    /// conversation goes on there.
    BackendChanged {
        backend: Backend,
        note: Option<String>,
    },
    ModelFailed {
        source: ModelSource,
        message: String,
    },
    Delta {
        id: u32,
        text: String,
    },
    Done {
        id: u32,
        completion: Completion,
    },
    Tokens {
        id: u32,
        ids: Vec<u32>,
    },
    /// Request `id` could not be carried out.
    Failed {
        id: u32,
        message: String,
    },
    /// One line of workflow `id`'s transcript: the JSON of a
    /// [`crate::agents::TranscriptEvent`], byte for byte what `hearth run` prints.
    Transcript {
        id: u32,
        line: String,
    },
    /// Agent `agent` (by index in the workflow) of workflow `id` is now in `state`.
    AgentState {
        id: u32,
        agent: usize,
        state: AgentState,
    },
    /// Workflow `id` holds before logical step `step` (paused), or runs again (`None`).
    WorkflowHeld {
        id: u32,
        step: Option<u32>,
    },
    Monitor {
        sample: MonitorSample,
    },
    BusBenchDone {
        id: u32,
        figures: Vec<BusFigures>,
    },
    /// Milliseconds of one decode step per op family, slowest first (on the GPU: each op
    /// submitted alone and awaited).
    StepProfile {
        id: u32,
        ops: Vec<(String, f64)>,
    },
    /// Workflow `id` ended: finished, stopped by the page before a step, or failed (why).
    WorkflowEnded {
        id: u32,
        error: Option<String>,
        #[serde(default)]
        stopped_before: Option<u32>,
    },
    Error {
        message: String,
    },
}

impl EngineEvent {
    /// The request (its id) this event answers, if it answers one.
    pub fn request_id(&self) -> Option<u32> {
        match self {
            Self::Delta { id, .. }
            | Self::Done { id, .. }
            | Self::Tokens { id, .. }
            | Self::Failed { id, .. }
            | Self::Transcript { id, .. }
            | Self::AgentState { id, .. }
            | Self::WorkflowHeld { id, .. }
            | Self::BusBenchDone { id, .. }
            | Self::StepProfile { id, .. }
            | Self::WorkflowEnded { id, .. } => Some(*id),
            Self::Ready { .. }
            | Self::KernelsDone { .. }
            | Self::ModelPlan { .. }
            | Self::ModelProgress { .. }
            | Self::ModelLoaded { .. }
            | Self::BackendChanged { .. }
            | Self::ModelFailed { .. }
            | Self::Monitor { .. }
            | Self::Error { .. } => None,
        }
    }

    /// Whether this is the last event its request gets.
    pub fn ends_request(&self) -> bool {
        matches!(
            self,
            Self::Done { .. }
                | Self::Tokens { .. }
                | Self::Failed { .. }
                | Self::BusBenchDone { .. }
                | Self::StepProfile { .. }
                | Self::WorkflowEnded { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workflows_module_is_found_by_path_then_by_file_name() {
        let module = |path: &str| AgentModule { path: path.into(), wasm: vec![0, 97, 115, 109] };
        let given = [module("../target/agents/word_stats.wasm"), module("keywords.wasm"), module("a/x.wasm")];
        let found = |path| AgentModule::find(&given, path).map(|m| m.path.as_str());
        assert_eq!(found("../target/agents/word_stats.wasm"), Some("../target/agents/word_stats.wasm"));
        assert_eq!(found("../target/agents/keywords.wasm"), Some("keywords.wasm"));
        assert_eq!(found("agents\\word_stats.wasm"), Some("../target/agents/word_stats.wasm"));
        assert_eq!(found("faulty_agent.wasm"), None);
        // Two files of that name: which one is meant is unknown.
        let twice = [module("a/x.wasm"), module("b/x.wasm")];
        assert_eq!(AgentModule::find(&twice, "c/x.wasm"), None);
        assert_eq!(AgentModule::find(&twice, "b/x.wasm").map(|m| m.path.as_str()), Some("b/x.wasm"));
    }

    #[test]
    fn build_names_round_trip() {
        for b in [RuntimeBuild::Threaded, RuntimeBuild::SingleThreaded] {
            assert_eq!(RuntimeBuild::from_dir(b.dir()), Some(b));
        }
        assert_eq!(RuntimeBuild::from_dir("../threaded"), None);
    }

    #[test]
    fn events_survive_serialisation() {
        let event = EngineEvent::Ready {
            capabilities: Capabilities {
                build: RuntimeBuild::SingleThreaded,
                threads: 1,
                gpu: GpuStatus::Unavailable { reason: "navigator.gpu is undefined".into() },
            },
        };
        let json = serde_json::to_string(&event).unwrap();
        assert!(json.contains(r#""type":"ready""#), "{json}");
        assert_eq!(serde_json::from_str::<EngineEvent>(&json).unwrap(), event);
    }
}
