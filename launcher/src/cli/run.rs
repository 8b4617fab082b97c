//! `hearth run`: a workflow's transcript as JSON lines, run natively on threads or by the
//! engine worker in the app's page in a web engine (`--engine chromium|servo`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use hearth::engines::{self, EngineKind, PageModel};
use hearth::llm;
use hearth_agents::agent::Jitter;
use hearth_agents::{RunError, RunOptions, Transport, Workflow};
use hearth_api::protocol::AgentModule;
use hearth_core::engine::BackendChoice;

use super::{context, fail, run_async, serve_on_free_port};

#[derive(clap::Args)]
pub struct RunArgs {
    #[arg(long)]
    workflow: PathBuf,
    /// A GGUF file, or a shipped model by id (gemma-3-270m-q4_k_m); the default model if left out.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Replaces the workflow's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Positions of context (the KV cache's size); at most the model's own. 4096 natively
    /// and 2048 in a page if left out.
    #[arg(long)]
    ctx: Option<usize>,
    #[arg(long, default_value = "auto")]
    backend: BackendChoice,
    /// The bus between the hub and the agents: shared memory rings, or message passing (in
    /// a page: its single-threaded build, each agent with a runtime of its own).
    #[arg(long, default_value = "shared")]
    bus: BusKind,
    /// Inject random delays of up to this many ms into the agents (tests of determinism).
    #[arg(long, default_value_t = 0, hide = true)]
    jitter_ms: u64,
    /// native: the core on threads; chromium or servo: the app's page in that engine, each
    /// agent in a Web Worker over the shared-memory bus.
    #[arg(long, default_value = "native")]
    engine: EngineKind,
}

#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
enum BusKind {
    Shared,
    Messages,
}

pub fn run(args: RunArgs) -> ExitCode {
    let model = llm::model_path(args.model);
    let ctx = context(args.ctx, args.engine);
    if args.engine != EngineKind::Native {
        return in_page(args.engine, &args.workflow, &model, ctx, args.seed, args.backend, args.bus);
    }
    let transport = match args.bus {
        BusKind::Shared => Transport::SharedMemory,
        BusKind::Messages => Transport::MessagePassing,
    };
    let options = RunOptions { transport, jitter: Jitter { max_ms: args.jitter_ms } };
    let mut out = std::io::stdout().lock();
    match llm::run_workflow(&args.workflow, &model, ctx, args.seed, args.backend, options, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// The app served on a free loopback port, opened in the web engine, and the workflow run by
/// the engine worker in its page; the transcript is printed as it comes, the same JSON lines
/// as natively.
fn in_page(
    engine: EngineKind,
    workflow: &Path,
    model: &Path,
    n_ctx: usize,
    seed: Option<u64>,
    backend: BackendChoice,
    bus: BusKind,
) -> ExitCode {
    let toml = match std::fs::read_to_string(workflow) {
        Ok(toml) => toml,
        Err(e) => return fail(format!("cannot read the workflow {}: {e}", workflow.display())),
    };
    // Checked here too, so a bad file fails before a browser starts, with the same message.
    let parsed = match Workflow::from_toml(&toml) {
        Ok(parsed) => parsed,
        Err(e) => return fail(format!("{}: {e}", workflow.display())),
    };
    // The page has no files: the custom agents' modules go with the workflow, read from
    // beside it as natively.
    let base_dir = workflow.parent().unwrap_or(Path::new("."));
    let mut modules = Vec::new();
    for agent in &parsed.agents {
        let Some(path) = &agent.module else { continue };
        match std::fs::read(base_dir.join(path)) {
            Ok(wasm) => modules.push(AgentModule { path: path.clone(), wasm }),
            Err(source) => return fail(RunError::ReadModule { agent: agent.name.clone(), path: path.clone(), source }),
        }
    }
    let page_model = match PageModel::of(model) {
        Ok(page_model) => page_model,
        Err(e) => return fail(e),
    };
    run_async(async move {
        let url = serve_on_free_port(page_model.session.clone()).await?;
        // The page's bus follows its runtime build: message passing is the single-threaded one.
        let mut page_url = engines::model_page_url(&url, backend, &page_model, n_ctx);
        if bus == BusKind::Messages {
            page_url.push_str("&build=single");
        }
        let page = engines::open_page(engine, &page_url).await?;
        hearth::page::wait_for_model(page.as_ref(), Duration::from_secs(600)).await.map_err(|e| e.to_string())?;
        let mut out = std::io::stdout().lock();
        let mut print = |line: &str| {
            let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        };
        let limit = Duration::from_secs(3600);
        let run = hearth::page::run_workflow(page.as_ref(), &toml, seed, &modules, &mut print, limit).await;
        run.map_err(|e| format!("{}: {e}", workflow.display()))
    })
}
