//! The command line: the clap tree, and one file per command around a few shared helpers
//! (an async runtime per command, the app served on a free port, one-line errors).

mod bench;
mod bench_agents;
mod bench_load;
mod generate;
mod open;
mod probe;
mod run;
mod serve;
mod tokenize;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hearth::engines::{self, EngineKind};
use hearth::server::SessionModel;
use hearth::{llm, server};
use hearth_api::protocol::PAGE_CONTEXT;

#[derive(Parser)]
#[command(name = "hearth", version, about = "Local-first LLM inference and agent workflows in a web engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the app (embedded in this binary) and the model cache on 127.0.0.1.
    Serve(serve::ServeArgs),
    /// Open the app in a desktop window, in Servo (a `hearth` built with scripts/build-servo.sh).
    Open(open::OpenArgs),
    /// Print the token ids of TEXT as a JSON array.
    Tokenize(tokenize::TokenizeArgs),
    /// Complete a prompt natively (GPU through wgpu, or CPU), streaming the text to stdout.
    Generate(generate::GenerateArgs),
    /// Open the app in a web engine and print what its page has, as JSON: cross-origin
    /// isolation, SharedArrayBuffer, threads, the WebGPU adapter, and the backend the model
    /// loaded on.
    Probe(probe::ProbeArgs),
    /// Run a workflow (TOML, see examples/) and print its transcript as JSON lines.
    Run(run::RunArgs),
    /// Measure prefill and decode tokens/s on the default model, natively and in headless
    /// Chromium (both builds), beside llama.cpp and wllama; prints a Markdown table.
    Bench(bench::BenchArgs),
}

/// Parses the command line and runs its command.
pub fn main() -> ExitCode {
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
        Command::Serve(args) => serve::run(args),
        Command::Open(args) => open::run(args),
        Command::Tokenize(args) => tokenize::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Probe(args) => probe::run(args),
        Command::Run(args) => run::run(args),
        Command::Bench(args) => bench::run(args),
    }
}

/// The async runtime a command runs on; without one (said on stderr) the command fails with
/// exit status 1.
fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().map_err(|e| eprintln!("hearth: cannot start the async runtime: {e}")).ok()
}

/// Runs `job` on an async runtime of its own: success, or its error as one line and exit
/// status 2.
fn run_async(job: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    let Some(runtime) = runtime() else { return ExitCode::FAILURE };
    exit_with(runtime.block_on(job))
}

/// Success, or the error as one line and exit status 2.
fn exit_with(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// The app served on a free loopback port for the rest of the runtime's life (with a model
/// from the command line, when given, that its page may read); its URL.
async fn serve_on_free_port(session_model: Option<SessionModel>) -> Result<String, String> {
    let listener = server::bind(0).await.map_err(|e| e.to_string())?;
    engines::serve_in_background(listener, None, session_model)
}

/// `--ctx`, or the engine's own default: [`llm::DEFAULT_CONTEXT`] natively, and in a page
/// [`PAGE_CONTEXT`] (its wasm32 memory holds the KV cache beside the weights).
fn context(ctx: Option<usize>, engine: EngineKind) -> usize {
    ctx.unwrap_or(if engine == EngineKind::Native { llm::DEFAULT_CONTEXT } else { PAGE_CONTEXT })
}

/// Reports a user-facing error in one line; exit code 2.
fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("hearth: {e}");
    ExitCode::from(2)
}

/// A status line on stdout. A closed stdout (the reader went away) must not stop the server,
/// so write errors are ignored where `println!` would panic.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}
