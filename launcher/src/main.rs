//! `hearth`: serves the Hearth app on loopback.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hearth::assets;
use hearth::server::{self, ServeOptions};
use hearth_core::catalog::{DEFAULT_MODEL, models_dir};

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
    },
}

fn main() -> ExitCode {
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
        Command::Serve { port, open } => serve(port, open),
    }
}

/// A status line on stdout. A closed stdout (the reader went away) must not stop the server,
/// so write errors are ignored where `println!` would panic.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

fn serve(port: u16, open: bool) -> ExitCode {
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
        say(&format!("{} app files embedded; press Ctrl-C to stop", assets::files().count()));
        if open && let Err(e) = webbrowser::open(&url) {
            eprintln!("hearth: could not open a browser ({e}); open {url} yourself");
        }
        let options = ServeOptions { models_dir, cross_origin_isolation: true };
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        match server::serve(listener, options, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hearth: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
