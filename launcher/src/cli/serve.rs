//! `hearth serve`: the app on loopback; with `--headless`, the OpenAI-compatible API too,
//! answered by an engine (in a page, or native) once its model has loaded.

use std::path::PathBuf;
use std::process::ExitCode;

use hearth::engines::{self, EngineKind, PageModel};
use hearth::openai::Api;
use hearth::server::{self, ServeOptions};
use hearth::{assets, llm};
use hearth_api::catalog::{DEFAULT_MODEL, models_dir};
use hearth_core::engine::BackendChoice;

use super::{context, fail, runtime, say};

#[derive(clap::Args)]
pub struct ServeArgs {
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
}

/// The engine that answers `--headless`'s API.
struct ApiEngine {
    kind: EngineKind,
    model: PathBuf,
    n_ctx: usize,
    backend: BackendChoice,
}

pub fn run(args: ServeArgs) -> ExitCode {
    let api = args.headless.then(|| {
        let kind = args.engine.unwrap_or_else(EngineKind::default_headless);
        ApiEngine { kind, model: llm::model_path(args.model), n_ctx: context(args.ctx, kind), backend: args.backend }
    });
    let app_dir = args.app_dir;
    if let Some(dir) = &app_dir
        && !dir.join("index.html").is_file()
    {
        return fail(format!("{} has no index.html: build the app with scripts/build-app.sh", dir.display()));
    }
    let Some(runtime) = runtime() else { return ExitCode::FAILURE };
    runtime.block_on(async move {
        let listener = match server::bind(args.port).await {
            Ok(listener) => listener,
            Err(e) => return fail(e),
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
        if args.open
            && let Err(e) = webbrowser::open(&url)
        {
            eprintln!("hearth: could not open a browser ({e}); open {url} yourself");
        }
        // The API's page reads a model from the command line through this server.
        let session_model = match api.as_ref().filter(|api| api.kind != EngineKind::Native) {
            Some(api) => match PageModel::of(&api.model) {
                Ok(page_model) => page_model.session,
                Err(e) => return fail(e),
            },
            None => None,
        };
        let options = ServeOptions { models_dir, cross_origin_isolation: true, app_dir, session_model };
        let api = api.map(|api| start_api(api, &url));
        match server::serve(listener, options, api, shutdown()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hearth: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// The API's state; its engine loads in the background while the server already answers
/// (503 until it is ready). An engine that cannot start ends the process.
fn start_api(ApiEngine { kind, model, n_ctx, backend }: ApiEngine, url: &str) -> std::sync::Arc<Api> {
    let state = Api::new(engines::model_id(&model));
    let api = state.clone();
    let url = url.to_owned();
    tokio::spawn(async move {
        match engines::completer(kind, &model, n_ctx, backend, &url).await {
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
}

/// Ctrl-C or SIGTERM: stop serving, so what was opened (a browser) is closed.
async fn shutdown() {
    #[cfg(unix)]
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        return;
    }
    let _ = tokio::signal::ctrl_c().await;
}
