//! `hearth`: serves the Hearth app on loopback, and runs the engine from the command line.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

use hearth::engines::{self, EngineKind, PageModel};
use hearth::openai::Api;
use hearth::server::{self, ServeOptions};
use hearth::{assets, llm};
use hearth_core::agents::agent::Jitter;
use hearth_core::agents::{RunOptions, Transport};
use hearth_core::catalog::{DEFAULT_MODEL, models_dir};
use hearth_core::chat_template::ChatMessage;
use hearth_core::engine::{BackendChoice, GenerateParams, JsonSchemaFormat, Prompt, ResponseFormat};
use hearth_core::kernels::gpu::GpuOptions;
use hearth_core::protocol::PAGE_CONTEXT;
use hearth_core::sampler::SamplerConfig;

#[derive(Parser)]
#[command(name = "hearth", version, about = "Local-first LLM inference and agent workflows in a web engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the app (embedded in this binary) and the model cache on 127.0.0.1.
    Serve {
        /// Port to listen on; 0 picks a free one.
        #[arg(long, default_value_t = 8417)]
        port: u16,
        /// Open the app in the default browser.
        #[arg(long)]
        open: bool,
        /// Also serve the OpenAI-compatible API under /v1/, answered by the engine running in
        /// the app's page in a headless web engine (or natively, with --engine native).
        #[arg(long)]
        headless: bool,
        /// Where the API's engine runs: servo when this hearth has it built in, else chromium.
        #[arg(long, requires = "headless")]
        engine: Option<EngineKind>,
        /// A GGUF file, or a shipped model by id; the default model if left out.
        #[arg(long, requires = "headless")]
        model: Option<PathBuf>,
        /// auto: a hardware GPU when there is one and the model fits, else the CPU.
        #[arg(long, default_value = "auto", requires = "headless")]
        backend: BackendChoice,
        /// Positions of context (the KV cache's size); at most the model's own. 4096 natively
        /// and 2048 in a page if left out.
        #[arg(long, requires = "headless")]
        ctx: Option<usize>,
        /// Serve the app from this folder (a dist/ built by scripts/build-app.sh), read at each
        /// request, instead of the copy embedded in this binary.
        #[arg(long)]
        app_dir: Option<PathBuf>,
    },
    /// Open the app in a desktop window, in Servo (a `hearth` built with scripts/build-servo.sh).
    Open {
        /// `?backend=` for the page: auto, cpu or gpu.
        #[arg(long, default_value = "auto")]
        backend: BackendChoice,
    },
    /// Print the token ids of TEXT as a JSON array.
    Tokenize {
        /// A GGUF file, or a shipped model by id (gemma-3-270m-q4_k_m); the default model if left out.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Treat special-token text as plain text and add no BOS/EOS.
        #[arg(long)]
        no_special: bool,
        text: String,
    },
    /// Complete a prompt natively (GPU through wgpu, or CPU), streaming the text to stdout.
    Generate {
        /// A GGUF file, or a shipped model by id (gemma-3-270m-q4_k_m); the default model if left out.
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long)]
        prompt: String,
        /// Send the prompt as one user message through the model's chat template.
        #[arg(long)]
        chat: bool,
        #[arg(long, default_value_t = 256)]
        max_tokens: usize,
        /// 0 is greedy.
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        /// 0 keeps every token.
        #[arg(long, default_value_t = 0)]
        top_k: usize,
        #[arg(long, default_value_t = 1.0)]
        top_p: f32,
        #[arg(long, default_value_t = 0.0)]
        min_p: f32,
        #[arg(long, default_value_t = 1.0)]
        repeat_penalty: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Stop before this text (repeatable).
        #[arg(long)]
        stop: Vec<String>,
        /// Keep going past the end-of-generation token.
        #[arg(long)]
        ignore_eos: bool,
        /// Read special-token text in the prompt (`<|im_start|>`) as characters, not as the
        /// special tokens that llama.cpp and vLLM read it as.
        #[arg(long)]
        no_special: bool,
        /// Positions of context (the KV cache's size); at most the model's own. 4096 natively
        /// and 2048 in a page if left out.
        #[arg(long)]
        ctx: Option<usize>,
        /// With --json: the N most likely tokens and their logits at each step.
        #[arg(long, default_value_t = 0)]
        top_logits: usize,
        /// Print one JSON object (text, token ids, counts, timings) instead of streaming text.
        #[arg(long)]
        json: bool,
        /// Constrain the output to any JSON object.
        #[arg(long, conflicts_with = "json_schema")]
        json_object: bool,
        /// Constrain the output to JSON that this JSON Schema file accepts.
        #[arg(long)]
        json_schema: Option<PathBuf>,
        /// auto: a hardware GPU when there is one and the model fits, else the CPU.
        #[arg(long, default_value = "auto")]
        backend: BackendChoice,
        /// native: the core without a web engine; chromium or servo: the app's page in that
        /// engine (which reads --model's file from this hearth, for this session only).
        #[arg(long, default_value = "native")]
        engine: EngineKind,
    },
    /// Open the app in a web engine and print what its page has, as JSON: cross-origin
    /// isolation, SharedArrayBuffer, threads, the WebGPU adapter, and the backend the model
    /// loaded on.
    Probe {
        #[arg(long, default_value = "chromium")]
        engine: EngineKind,
        #[arg(long, default_value = "auto")]
        backend: BackendChoice,
    },
    /// Run a workflow (TOML, see examples/) and print its transcript as JSON lines.
    Run {
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
    },
    /// Measure prefill and decode tokens/s on the default model, natively and in headless
    /// Chromium (both builds), beside llama.cpp and wllama; prints a Markdown table.
    Bench {
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
    },
}

#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
enum BusKind {
    Shared,
    Messages,
}

fn main() -> ExitCode {
    quiet_display_probe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line, e.g. "error: invalid value 'x' for '--port <PORT>': invalid digit found in string".
            let text = e.to_string();
            eprintln!("hearth: {}", text.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Serve { port, open, headless, engine, model, backend, ctx, app_dir } => {
            let api = headless.then(|| {
                let kind = engine.unwrap_or_else(EngineKind::default_headless);
                ApiEngine { kind, model, n_ctx: context(ctx, kind), backend }
            });
            serve(port, open, api, app_dir)
        }
        Command::Tokenize { model, no_special, text } => {
            match llm::tokenize(&llm::model_path(model), &text, !no_special) {
                Ok(json) => {
                    say(&json);
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::Run { workflow, model, seed, ctx, backend, engine, bus, .. } if engine != EngineKind::Native => {
            run_in_page(engine, &workflow, &llm::model_path(model), context(ctx, engine), seed, backend, bus)
        }
        Command::Run { workflow, model, seed, ctx, backend, bus, jitter_ms, .. } => {
            let transport = match bus {
                BusKind::Shared => Transport::SharedMemory,
                BusKind::Messages => Transport::MessagePassing,
            };
            let options = RunOptions { transport, jitter: Jitter { max_ms: jitter_ms } };
            let mut out = std::io::stdout().lock();
            let ctx = context(ctx, EngineKind::Native);
            match llm::run_workflow(&workflow, &llm::model_path(model), ctx, seed, backend, options, &mut out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        Command::Probe { engine, backend } => probe(engine, backend),
        Command::Open { backend } => open_window(backend),
        Command::Bench { load: true, load_agents, minutes, .. } => bench_load(load_agents, minutes),
        Command::Bench { gen_tokens, agents: true, native_only, .. } => bench_agents(gen_tokens, native_only),
        Command::Bench { prompt_tokens, gen_tokens, native_only, backend: BackendChoice::Gpu, .. } => {
            bench_gpu(prompt_tokens, gen_tokens, native_only)
        }
        Command::Bench { prompt_tokens, gen_tokens, native_only, no_peers, model, .. } => {
            bench(&llm::model_path(model), prompt_tokens, gen_tokens, native_only, no_peers)
        }
        Command::Generate {
            model,
            prompt,
            chat,
            max_tokens,
            temperature,
            top_k,
            top_p,
            min_p,
            repeat_penalty,
            seed,
            stop,
            ignore_eos,
            no_special,
            ctx,
            top_logits,
            json,
            json_object,
            json_schema,
            backend,
            engine,
        } => {
            let response_format = match (json_object, json_schema) {
                (true, _) => ResponseFormat::JsonObject,
                (false, None) => ResponseFormat::Text,
                (false, Some(path)) => match llm::read_schema(&path) {
                    Ok(schema) => {
                        ResponseFormat::JsonSchema { json_schema: JsonSchemaFormat { name: String::new(), schema } }
                    }
                    Err(e) => return fail(&e),
                },
            };
            let sampler =
                SamplerConfig { temperature, top_k, top_p, min_p, repeat_penalty, seed, ..Default::default() };
            let params = GenerateParams {
                max_tokens,
                sampler,
                stop,
                ignore_eos,
                response_format,
                no_special,
                top_logits,
                ..Default::default()
            };
            let (model, ctx) = (llm::model_path(model), context(ctx, engine));
            if engine != EngineKind::Native {
                return generate_in_page(engine, &model, ctx, &prompt, chat, params, backend, json);
            }
            let mut out = std::io::stdout().lock();
            match llm::generate(&model, ctx, &prompt, chat, &params, backend, json, &mut out) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
    }
}

/// Runs `job` on an async runtime of its own: success, or its error as one line and exit
/// status 2.
fn run_async(job: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("hearth: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(job) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hearth: {e}");
            ExitCode::from(2)
        }
    }
}

/// `--ctx`, or the engine's own default: [`llm::DEFAULT_CONTEXT`] natively, and in a page
/// [`PAGE_CONTEXT`] (its wasm32 memory holds the KV cache beside the weights).
fn context(ctx: Option<usize>, engine: EngineKind) -> usize {
    ctx.unwrap_or(if engine == EngineKind::Native { llm::DEFAULT_CONTEXT } else { PAGE_CONTEXT })
}

/// Mesa's Vulkan drivers probe for a Wayland display when an adapter is opened, and without
/// `XDG_RUNTIME_DIR` (a server, a container, CI) print "error: XDG_RUNTIME_DIR is invalid or
/// not set" for it, although no display is needed. Give them a private one, as a login
/// session would. Runs first in `main`, before any other thread exists.
fn quiet_display_probe() {
    #[cfg(unix)]
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("hearth-runtime-{uid}"));
        // Made now or by an earlier run; used only if it is this user's and private.
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
        let ours = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0);
        if ours {
            // SAFETY: no other thread has started yet.
            unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
        }
    }
}

fn bench(
    model: &std::path::Path,
    prompt_tokens: usize,
    gen_tokens: usize,
    native_only: bool,
    no_peers: bool,
) -> ExitCode {
    use hearth::bench;
    let model_bytes = match std::fs::metadata(model) {
        Ok(m) => m.len(),
        Err(e) => {
            eprintln!("hearth: cannot open the model {}: {e}", model.display());
            return ExitCode::from(2);
        }
    };
    let default = *model == models_dir().join(DEFAULT_MODEL.file);
    let page_model = match PageModel::of(model) {
        Ok(page_model) => page_model,
        Err(e) => {
            eprintln!("hearth: {e}");
            return ExitCode::from(2);
        }
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rows = Vec::new();
    let thread_counts = if cores > 1 { vec![1, cores] } else { vec![1] };
    for &threads in &thread_counts {
        eprintln!("bench: hearth natively, {threads} thread(s)…");
        match bench::native(model, prompt_tokens, gen_tokens, threads) {
            Ok(row) => rows.push(row),
            Err(e) => {
                eprintln!("hearth: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if !native_only {
        let runtime = match tokio::runtime::Runtime::new() {
            Ok(runtime) => runtime,
            Err(e) => {
                eprintln!("hearth: cannot start the async runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        let result: Result<(), String> = runtime.block_on(async {
            let listener = server::bind(0).await.map_err(|e| e.to_string())?;
            let url = format!("http://{}/", listener.local_addr().map_err(|e| e.to_string())?);
            let options = ServeOptions::new(page_model.session.clone());
            let server = tokio::spawn(server::serve(listener, options, None, std::future::pending()));
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
            server.abort();
            Ok(())
        });
        if let Err(e) = result {
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

fn bench_load(agents: usize, minutes: f64) -> ExitCode {
    use hearth::bench_load;
    let faulty = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/agents/faulty_agent.wasm");
    if !faulty.is_file() {
        eprintln!("hearth: {} is missing: build it with scripts/build-agents.sh", faulty.display());
        return ExitCode::from(2);
    }
    if !(minutes > 0.0 && minutes.is_finite()) || agents == 0 {
        eprintln!("hearth: --minutes must be above 0 and --load-agents at least 1");
        return ExitCode::from(2);
    }
    let model = models_dir().join(DEFAULT_MODEL.file);
    let modules = agents / 4;
    eprintln!("bench: {agents} agents ({} LLM, {modules} faulting at random) for {minutes} minutes…", agents - modules);
    let f = match bench_load::run(&model, &faulty, agents, Duration::from_secs_f64(minutes * 60.0)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("hearth: {e}");
            return ExitCode::from(2);
        }
    };
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let (first, last) = (f.resident.first().copied().unwrap_or(0), f.resident.last().copied().unwrap_or(0));
    let max = f.resident.iter().copied().max().unwrap_or(0);
    say(&format!(
        "| agents | runs | turns | messages | completion tokens | tokens/s | faults | restarts | gave up | seconds |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n\
         | {agents} | {} | {} | {} | {} | {:.1} | {} | {} | {} | {:.0} |",
        f.runs,
        f.turns,
        f.messages,
        f.completion_tokens,
        f.completion_tokens as f64 / f.seconds,
        f.faults,
        f.restarts,
        f.gave_up,
        f.seconds
    ));
    say(&format!(
        "\nruns in which every turn ended in a message, a give-up or a skip: {} of {}{}",
        f.runs - f.lost.len(),
        f.runs,
        if f.lost.is_empty() { " (nothing lost)".to_string() } else { format!("; missing: {:?}", f.lost) }
    ));
    say(&format!(
        "resident memory: after the first run {:.1} MiB, after the last {:.1} MiB, at most {:.1} MiB",
        mib(first),
        mib(last),
        mib(max)
    ));
    if f.lost.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn bench_agents(gen_tokens: usize, native_only: bool) -> ExitCode {
    use hearth::bench_agents;
    eprintln!("bench: the bus between two threads…");
    say("| bus (two threads, 64-byte messages) | one-way p50 | one-way p99 | messages/s |");
    say("| --- | --- | --- | --- |");
    let figures = bench_agents::bus();
    for f in &figures {
        say(&format!("| {} | {:.2} µs | {:.2} µs | {:.0} |", f.transport, f.p50_us, f.p99_us, f.messages_per_s));
    }
    say(&format!(
        "\nshared memory ÷ message passing: latency {:.2}×, throughput {:.2}×\n",
        figures[0].p50_us / figures[1].p50_us,
        figures[0].messages_per_s / figures[1].messages_per_s
    ));
    if !native_only {
        eprintln!("bench: the bus in headless Chromium, between the engine worker and another worker…");
        match bus_in_chromium() {
            Ok(figures) if figures.len() == 2 => {
                say("| bus in Chromium (two workers, 64-byte messages) | one-way p50 | one-way p99 | messages/s |");
                say("| --- | --- | --- | --- |");
                for f in &figures {
                    say(&format!(
                        "| {} | {:.1} µs | {:.1} µs | {:.0} |",
                        f.transport, f.p50_us, f.p99_us, f.messages_per_s
                    ));
                }
                say(&format!(
                    "\nshared-memory bus ÷ postMessage: latency {:.2}×, throughput {:.2}×\n",
                    figures[0].p50_us / figures[1].p50_us,
                    figures[0].messages_per_s / figures[1].messages_per_s
                ));
            }
            Ok(figures) => eprintln!("hearth: the page measured {} transports, not 2", figures.len()),
            Err(e) => {
                eprintln!("hearth: {e}");
                return ExitCode::from(2);
            }
        }
    }
    eprintln!("bench: four agents' LLM requests, {gen_tokens} tokens each…");
    match bench_agents::llm(&llm::model_path(None), gen_tokens) {
        Ok((sequential, batched)) => {
            say("| 4 agents' requests | completion tokens/s |");
            say("| --- | --- |");
            say(&format!("| one after another | {sequential:.1} |"));
            say(&format!("| one batch | {batched:.1} |"));
            say(&format!("\nbatched ÷ one after another: {:.2}×\n", batched / sequential));
        }
        Err(e) => {
            eprintln!("hearth: {e}");
            return ExitCode::from(2);
        }
    }
    eprintln!("bench: decoding free and constrained by a JSON schema…");
    match bench_agents::constrained(&llm::model_path(None)) {
        Ok((free, constrained)) => {
            say("| decode, sampled chat reply | tokens/s |");
            say("| --- | --- |");
            say(&format!("| free text | {free:.1} |"));
            say(&format!("| constrained by a JSON schema | {constrained:.1} |"));
            say(&format!("\nconstrained ÷ free: {:.2}×", constrained / free));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hearth: {e}");
            ExitCode::from(2)
        }
    }
}

/// The agents' bus against `postMessage` in the app's page in headless Chromium.
fn bus_in_chromium() -> Result<Vec<hearth_core::protocol::BusFigures>, String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let listener = server::bind(0).await.map_err(|e| e.to_string())?;
        let url = engines::serve_in_background(listener, None, None)?;
        let page = engines::open_page(EngineKind::Chromium, &engines::page_url(&url, BackendChoice::Cpu)).await?;
        hearth::page::wait_for_model(page.as_ref(), Duration::from_secs(300)).await.map_err(|e| e.to_string())?;
        let figures = hearth::page::run(
            page.as_ref(),
            "return await hearth.benchBus();",
            serde_json::Value::Null,
            Duration::from_secs(300),
        )
        .await
        .map_err(|e| e.to_string())?;
        serde_json::from_value(figures).map_err(|e| format!("the page's figures do not parse: {e}"))
    })
}

fn bench_gpu(prompt_tokens: usize, gen_tokens: usize, native_only: bool) -> ExitCode {
    use hearth::bench;
    let model = llm::model_path(None);
    eprintln!("bench: hearth natively on the GPU…");
    let mut native = match bench::native_gpu(&model, prompt_tokens, gen_tokens, GpuOptions::default()) {
        Ok(run) => vec![run],
        Err(e) => {
            eprintln!("hearth: {e}");
            return ExitCode::from(2);
        }
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
        let runtime = match tokio::runtime::Runtime::new() {
            Ok(runtime) => runtime,
            Err(e) => {
                eprintln!("hearth: cannot start the async runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        runtime.block_on(async {
            let Ok(listener) = server::bind(0).await else { return };
            let Ok(addr) = listener.local_addr() else { return };
            let url = format!("http://{addr}/");
            let options = ServeOptions::new(None);
            let server = tokio::spawn(server::serve(listener, options, None, std::future::pending()));
            eprintln!("bench: hearth in Chromium on WebGPU…");
            match bench::chromium(&url, "backend=gpu", 1, prompt_tokens, gen_tokens).await {
                Ok(mut row) => {
                    row.engine = "hearth (GPU)".into();
                    browser_rows.push(row);
                }
                Err(e) => eprintln!("hearth: the Chromium run failed: {e}"),
            }
            server.abort();
        });
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

/// Reports a user-facing error in one line; exit code 2.
fn fail(e: &llm::CliError) -> ExitCode {
    eprintln!("hearth: {e}");
    ExitCode::from(2)
}

/// A status line on stdout. A closed stdout (the reader went away) must not stop the server,
/// so write errors are ignored where `println!` would panic.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// `hearth open`: the app served on a free loopback port, shown in a Servo window until it is
/// closed. The window's event loop must own the main thread; the server runs on the runtime's.
fn open_window(backend: BackendChoice) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("hearth: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let url = runtime.block_on(async {
        let listener = server::bind(0).await.map_err(|e| e.to_string())?;
        engines::serve_in_background(listener, None, None)
    });
    let result = url.and_then(|url| {
        say(&format!("Hearth is serving on {url}; opening it in a window"));
        #[cfg(feature = "servo")]
        return hearth::window::open(&engines::page_url(&url, backend));
        #[cfg(not(feature = "servo"))]
        {
            let _ = backend;
            Err("this hearth was built without Servo: build it with scripts/build-servo.sh (the first build \
                 takes about an hour on 2 cores), or open the URL in a browser with `hearth serve --open`"
                .to_string())
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hearth: {e}");
            ExitCode::from(2)
        }
    }
}

/// `hearth probe`: the page's capabilities once its model has loaded.
fn probe(engine: EngineKind, backend: BackendChoice) -> ExitCode {
    run_async(async move {
        let listener = server::bind(0).await.map_err(|e| e.to_string())?;
        let url = engines::serve_in_background(listener, None, None)?;
        let page = engines::open_page(engine, &engines::page_url(&url, backend)).await?;
        let loaded = hearth::page::wait_for_model(page.as_ref(), std::time::Duration::from_secs(600)).await;
        let mut report = hearth::page::capabilities(page.as_ref()).await.map_err(|e| e.to_string())?;
        report["engine"] = engine.name().into();
        match loaded {
            Ok(backend) => report["backend"] = backend.into(),
            Err(e) => report["model_error"] = e.to_string().into(),
        }
        say(&report.to_string());
        Ok(())
    })
}

/// `hearth generate --engine chromium|servo`: the app served on a free loopback port, opened in
/// the web engine, and the prompt completed by the engine in its page.
#[allow(clippy::too_many_arguments)]
fn generate_in_page(
    engine: EngineKind,
    model: &std::path::Path,
    n_ctx: usize,
    prompt: &str,
    chat: bool,
    params: GenerateParams,
    backend: BackendChoice,
    json: bool,
) -> ExitCode {
    let prompt = if chat { Prompt::Chat(vec![ChatMessage::new("user", prompt)]) } else { Prompt::Text(prompt.into()) };
    run_async(async move {
        let listener = server::bind(0).await.map_err(|e| e.to_string())?;
        let url = engines::serve_in_background(listener, None, PageModel::of(model)?.session)?;
        let completer = engines::completer(engine, model, n_ctx, backend, &url).await?;
        let (deltas, mut text) = tokio::sync::mpsc::unbounded_channel::<String>();
        let printer = tokio::spawn(async move {
            while let Some(delta) = text.recv().await {
                if !json {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(delta.as_bytes()).and_then(|()| out.flush());
                }
            }
        });
        let done = completer.generate(prompt, params, deltas).await;
        let _ = printer.await;
        let done = done.map_err(|e| match e {
            hearth::completer::CompleteError::Invalid(m) | hearth::completer::CompleteError::Failed(m) => m,
        })?;
        if json {
            let state = completer.page_state().await.unwrap_or_default();
            let context = state["context"].as_u64().map(|c| c as usize);
            let memory = state.get("monitor").filter(|m| !m.is_null());
            say(&llm::completion_json(&done, completer.backend(), context, None, memory));
        }
        Ok(())
    })
}

/// `hearth run --engine chromium|servo`: the app served on a free loopback port, opened in the
/// web engine, and the workflow run by the engine worker in its page; the transcript is
/// printed as it comes, the same JSON lines as `hearth run` natively.
fn run_in_page(
    engine: EngineKind,
    workflow: &std::path::Path,
    model: &std::path::Path,
    n_ctx: usize,
    seed: Option<u64>,
    backend: BackendChoice,
    bus: BusKind,
) -> ExitCode {
    let toml = match std::fs::read_to_string(workflow) {
        Ok(toml) => toml,
        Err(e) => {
            eprintln!("hearth: cannot read the workflow {}: {e}", workflow.display());
            return ExitCode::from(2);
        }
    };
    // Checked here too, so a bad file fails before a browser starts, with the same message.
    let parsed = match hearth_core::agents::Workflow::from_toml(&toml) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("hearth: {}: {e}", workflow.display());
            return ExitCode::from(2);
        }
    };
    // The page has no files: the custom agents' modules go with the workflow, read from
    // beside it as natively.
    let base_dir = workflow.parent().unwrap_or(std::path::Path::new("."));
    let mut modules = Vec::new();
    for agent in &parsed.agents {
        let Some(path) = &agent.module else { continue };
        match std::fs::read(base_dir.join(path)) {
            Ok(wasm) => modules.push(hearth_core::protocol::AgentModule { path: path.clone(), wasm }),
            Err(source) => {
                let agent = agent.name.clone();
                eprintln!(
                    "hearth: {}",
                    hearth_core::agents::RunError::ReadModule { agent, path: path.clone(), source }
                );
                return ExitCode::from(2);
            }
        }
    }
    let page_model = match PageModel::of(model) {
        Ok(page_model) => page_model,
        Err(e) => {
            eprintln!("hearth: {e}");
            return ExitCode::from(2);
        }
    };
    run_async(async move {
        let listener = server::bind(0).await.map_err(|e| e.to_string())?;
        let url = engines::serve_in_background(listener, None, page_model.session.clone())?;
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

/// `hearth serve`: the app on loopback; with `api`, the OpenAI-compatible API too, answered by
/// that engine once its model has loaded.
/// The engine that answers `hearth serve --headless`'s API.
struct ApiEngine {
    kind: EngineKind,
    model: Option<PathBuf>,
    n_ctx: usize,
    backend: BackendChoice,
}

fn serve(port: u16, open: bool, api: Option<ApiEngine>, app_dir: Option<PathBuf>) -> ExitCode {
    if let Some(dir) = &app_dir
        && !dir.join("index.html").is_file()
    {
        eprintln!("hearth: {} has no index.html: build the app with scripts/build-app.sh", dir.display());
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("hearth: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match server::bind(port).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("hearth: {e}");
                return ExitCode::from(2);
            }
        };
        let url = match listener.local_addr() {
            Ok(addr) => format!("http://{addr}/"),
            Err(e) => {
                eprintln!("hearth: {e}");
                return ExitCode::FAILURE;
            }
        };
        let models_dir = models_dir();
        let model = models_dir.join(DEFAULT_MODEL.file);
        say(&format!("Hearth is serving on {url}"));
        if model.is_file() {
            say(&format!("default model: {} ({})", DEFAULT_MODEL.name, model.display()));
        } else {
            say(&format!("default model: missing at {} (run scripts/fetch-model.sh)", model.display()));
        }
        match &app_dir {
            Some(dir) => say(&format!("the app from {}; press Ctrl-C to stop", dir.display())),
            None => say(&format!("{} app files embedded; press Ctrl-C to stop", assets::files().count())),
        }
        if open && let Err(e) = webbrowser::open(&url) {
            eprintln!("hearth: could not open a browser ({e}); open {url} yourself");
        }
        // The API's page reads a model from the command line through this server.
        let page_model = match api.as_ref().filter(|api| api.kind != EngineKind::Native) {
            Some(api) => match PageModel::of(&llm::model_path(api.model.clone())) {
                Ok(page_model) => page_model.session,
                Err(e) => {
                    eprintln!("hearth: {e}");
                    return ExitCode::from(2);
                }
            },
            None => None,
        };
        let options = ServeOptions { models_dir, cross_origin_isolation: true, app_dir, session_model: page_model };
        let shutdown = async {
            // Ctrl-C or SIGTERM: stop serving, so what was opened (a browser) is closed.
            #[cfg(unix)]
            if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                return;
            }
            let _ = tokio::signal::ctrl_c().await;
        };
        let api = api.map(|ApiEngine { kind: engine, model, n_ctx, backend }| {
            let model = llm::model_path(model);
            let state = Api::new(engines::model_id(&model));
            let api = state.clone();
            let url = url.clone();
            // The engine loads while the server already answers (503 until it is ready).
            tokio::spawn(async move {
                match engines::completer(engine, &model, n_ctx, backend, &url).await {
                    Ok(completer) => {
                        // Ready first, then said: a client that waits for this line gets answers.
                        let engine = completer.describe();
                        api.set_completer(completer);
                        say(&format!("OpenAI-compatible API on {url}v1/ (model {:?}, engine {engine})", api.model));
                    }
                    Err(e) => {
                        eprintln!("hearth: the API's engine did not start: {e}");
                        std::process::exit(2);
                    }
                }
            });
            state
        });
        match server::serve(listener, options, api, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hearth: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
