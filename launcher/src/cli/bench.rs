//! `hearth bench`: prefill and decode tokens/s natively and in headless Chromium beside the
//! peers (`--backend gpu`: on the GPU), or instead the agents' figures (`--agents`, `--load`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use hearth::bench;
use hearth::engines::PageModel;
use hearth::llm;
use hearth_api::catalog::{DEFAULT_MODEL, models_dir};
use hearth_core::engine::BackendChoice;
use hearth_core::kernels::gpu::GpuOptions;

use super::{bench_agents, bench_load, fail, runtime, say, serve_on_free_port};

#[derive(clap::Args)]
pub struct BenchArgs {
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    #[arg(long, default_value_t = 128)]
    gen_tokens: usize,
    /// Skip the browser runs.
    #[arg(long)]
    native_only: bool,
    /// A GGUF file (natively and in Chromium, beside llama.cpp's prebuilt npm build on the
    /// same file), or a shipped model by id; the default model if left out.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Skip llama.cpp and wllama (scripts/bench-peers.sh).
    #[arg(long)]
    no_peers: bool,
    /// gpu: the GPU backend natively through wgpu (and in Chromium unless --native-only),
    /// with the fraction of memory bandwidth decode achieves and the slowest kernels.
    #[arg(long, default_value = "cpu")]
    backend: BackendChoice,
    /// Instead: the agents' bus (latency, throughput) and four agents' LLM requests batched
    /// against one after another.
    #[arg(long)]
    agents: bool,
    /// Instead: LOAD_AGENTS agents (every fourth faulting at random) run again and again
    /// for MINUTES on the default model; messages, tokens, faults, restarts and memory.
    #[arg(long)]
    load: bool,
    #[arg(long, default_value_t = 16, requires = "load")]
    load_agents: usize,
    #[arg(long, default_value_t = 10.0, requires = "load")]
    minutes: f64,
}

pub fn run(args: BenchArgs) -> ExitCode {
    if args.load {
        return bench_load::run(args.load_agents, args.minutes);
    }
    if args.agents {
        return bench_agents::run(args.gen_tokens, args.native_only);
    }
    if args.backend == BackendChoice::Gpu {
        return gpu(args.prompt_tokens, args.gen_tokens, args.native_only);
    }
    cpu(&llm::model_path(args.model), args.prompt_tokens, args.gen_tokens, args.native_only, args.no_peers)
}

/// The CPU backend natively at 1 and all threads, the page's builds in Chromium, and the peers.
fn cpu(model: &Path, prompt_tokens: usize, gen_tokens: usize, native_only: bool, no_peers: bool) -> ExitCode {
    let model_bytes = match std::fs::metadata(model) {
        Ok(m) => m.len(),
        Err(e) => return fail(format!("cannot open the model {}: {e}", model.display())),
    };
    let default = *model == models_dir().join(DEFAULT_MODEL.file);
    let page_model = match PageModel::of(model) {
        Ok(page_model) => page_model,
        Err(e) => return fail(e),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rows = Vec::new();
    let thread_counts = if cores > 1 { vec![1, cores] } else { vec![1] };
    for &threads in &thread_counts {
        eprintln!("bench: hearth natively, {threads} thread(s)…");
        match bench::native(model, prompt_tokens, gen_tokens, threads) {
            Ok(row) => rows.push(row),
            Err(e) => return fail(e),
        }
    }
    if !native_only {
        let Some(runtime) = runtime() else { return ExitCode::FAILURE };
        let served = runtime.block_on(async {
            let url = serve_on_free_port(page_model.session.clone()).await?;
            let model = &page_model.query;
            let mut runs: Vec<(String, usize)> =
                thread_counts.iter().map(|&t| (format!("build=threaded&threads={t}{model}"), t)).collect();
            runs.push((format!("build=single{model}"), 1));
            for (query, threads) in runs {
                eprintln!("bench: hearth in Chromium, {query}…");
                match bench::chromium(&url, &query, threads, prompt_tokens, gen_tokens).await {
                    Ok(row) => rows.push(row),
                    Err(e) => eprintln!("hearth: the Chromium run ({query}) failed: {e}"),
                }
            }
            Ok::<(), String>(())
        });
        if let Err(e) = served {
            eprintln!("hearth: {e}");
            return ExitCode::FAILURE;
        }
    }
    let peers = if no_peers {
        Vec::new()
    } else {
        eprintln!("bench: llama.cpp and wllama (scripts/bench-peers.sh)…");
        bench::peers(prompt_tokens, gen_tokens, (!default).then_some(model)).unwrap_or_else(|e| {
            eprintln!("hearth: {e}");
            Vec::new()
        })
    };
    let name = if default { DEFAULT_MODEL.name.to_owned() } else { model.display().to_string() };
    say(&format!("{prompt_tokens}-token prompt, {gen_tokens} decoded tokens, {name} ({model_bytes} bytes)"));
    say(&format!("on {}:\n", bench::cpu_description()));
    say(&bench::table(&rows, &peers, model_bytes));
    say(&format!("One decode step by op family, slowest first:\n\n{}", bench::step_profiles(&rows)));
    ExitCode::SUCCESS
}

/// The GPU backend natively (with and without f16 weights where the adapter has them) and in
/// Chromium on WebGPU.
fn gpu(prompt_tokens: usize, gen_tokens: usize, native_only: bool) -> ExitCode {
    let model = llm::model_path(None);
    eprintln!("bench: hearth natively on the GPU…");
    let mut native = match bench::native_gpu(&model, prompt_tokens, gen_tokens, GpuOptions::default()) {
        Ok(run) => vec![run],
        Err(e) => return fail(e),
    };
    // With shader-f16, the same run on the f32 kernels, for the ratio.
    if native[0].shader_f16 {
        eprintln!("bench: hearth natively on the GPU, f32 kernels…");
        match bench::native_gpu(&model, prompt_tokens, gen_tokens, GpuOptions { shader_f16: false }) {
            Ok(run) => native.push(run),
            Err(e) => eprintln!("hearth: the run without shader-f16 failed: {e}"),
        }
    }
    let mut browser_rows = Vec::new();
    if !native_only {
        let Some(runtime) = runtime() else { return ExitCode::FAILURE };
        let served = runtime.block_on(async {
            let url = serve_on_free_port(None).await?;
            eprintln!("bench: hearth in Chromium on WebGPU…");
            match bench::chromium(&url, "backend=gpu", 1, prompt_tokens, gen_tokens).await {
                Ok(mut row) => {
                    row.engine = "hearth (GPU)".into();
                    browser_rows.push(row);
                }
                Err(e) => eprintln!("hearth: the Chromium run failed: {e}"),
            }
            Ok::<(), String>(())
        });
        if let Err(e) = served {
            eprintln!("hearth: {e}");
        }
    }
    say(&format!("{prompt_tokens}-token prompt, {gen_tokens} decoded tokens, {}, GPU backend:\n", DEFAULT_MODEL.name));
    say(&bench::gpu_table(&native));
    if let [half, full] = &native[..] {
        say(&format!(
            "f16 weights against f32 kernels: prefill {:.2}x, decode {:.2}x\n",
            half.figures.prefill_tok_s / full.figures.prefill_tok_s,
            half.figures.decode_tok_s / full.figures.decode_tok_s,
        ));
    }
    if !browser_rows.is_empty() {
        say(&bench::table(&browser_rows, &[], 0));
        say(&format!("One decode step by op family in the page:\n\n{}", bench::step_profiles(&browser_rows)));
    }
    ExitCode::SUCCESS
}
