//! `hearth open`: the app served on a free loopback port, shown in a Servo window until it is
//! closed. The window's event loop must own the main thread; the server runs on the runtime's.

use std::process::ExitCode;

#[cfg(feature = "servo")]
use hearth::engines;
use hearth_core::engine::BackendChoice;

use super::{exit_with, runtime, say, serve_on_free_port};

#[derive(clap::Args)]
pub struct OpenArgs {
    /// `?backend=` for the page: auto, cpu or gpu.
    #[arg(long, default_value = "auto")]
    backend: BackendChoice,
}

pub fn run(OpenArgs { backend }: OpenArgs) -> ExitCode {
    let Some(runtime) = runtime() else { return ExitCode::FAILURE };
    let result = runtime.block_on(serve_on_free_port(None)).and_then(|url| {
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
    exit_with(result)
}
