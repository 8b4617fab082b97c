//! `--engine native|chromium|servo`: where the engine runs. `native` is the core without a web
//! engine; `chromium` and `servo` open the app served on loopback in that web engine and drive
//! the engine in its page, so what runs is exactly what a user's browser runs.

use std::path::Path;
use std::sync::Arc;

use hearth_core::catalog::{DEFAULT_MODEL, models_dir};
use hearth_core::engine::BackendChoice;
use tokio::net::TcpListener;

use crate::completer::{Completer, NativeCompleter, PageCompleter};
use crate::openai::Api;
use crate::page::Page;
use crate::server::{self, ServeOptions};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    /// The core natively, no web engine.
    Native,
    /// The app in headless Chromium (WebGPU on SwiftShader without a GPU).
    Chromium,
    /// The app in Servo, embedded in this binary (cargo feature `servo`).
    Servo,
}

impl EngineKind {
    /// As `--engine` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Chromium => "chromium",
            Self::Servo => "servo",
        }
    }

    /// The engine `serve --headless` uses unless told: Servo when it is built in.
    pub fn default_headless() -> Self {
        if cfg!(feature = "servo") { Self::Servo } else { Self::Chromium }
    }
}

/// The page's URL for a backend choice (the app reads `?backend=`).
pub fn page_url(base: &str, backend: BackendChoice) -> String {
    let backend = match backend {
        BackendChoice::Auto => "auto",
        BackendChoice::Cpu => "cpu",
        BackendChoice::Gpu => "gpu",
    };
    format!("{}?backend={backend}", base.trim_end_matches('/').to_owned() + "/")
}

/// Opens the app at `url` in a web engine.
pub async fn open_page(kind: EngineKind, url: &str) -> Result<Arc<dyn Page>, String> {
    match kind {
        EngineKind::Native => Err("the native engine has no page".into()),
        EngineKind::Chromium => {
            let browser = crate::chromium::Browser::open(url).await.map_err(|e| format!("chromium: {e}"))?;
            Ok(Arc::new(browser))
        }
        #[cfg(feature = "servo")]
        EngineKind::Servo => Ok(Arc::new(crate::servo::ServoPage::open(url).map_err(|e| format!("servo: {e}"))?)),
        #[cfg(not(feature = "servo"))]
        EngineKind::Servo => Err("this hearth was built without Servo: build it with scripts/build-servo.sh (the \
                                  first build takes about an hour on 2 cores) and run that binary, or use \
                                  --engine chromium"
            .into()),
    }
}

/// The engine behind a generation: the model natively, or the app's page at `url` (which
/// serves only the default model).
pub async fn completer(
    kind: EngineKind,
    model: &Path,
    n_ctx: usize,
    backend: BackendChoice,
    url: &str,
) -> Result<Arc<dyn Completer>, String> {
    if kind == EngineKind::Native {
        let model = model.to_owned();
        let native = tokio::task::spawn_blocking(move || NativeCompleter::start(&model, n_ctx, backend))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        return Ok(Arc::new(native));
    }
    if model != models_dir().join(DEFAULT_MODEL.file) {
        return Err(format!(
            "--engine {} runs the page's model, the default {}; --model works with --engine native",
            kind.name(),
            DEFAULT_MODEL.name
        ));
    }
    let page = open_page(kind, &page_url(url, backend)).await?;
    let completer = PageCompleter::start(page).await.map_err(|e| e.to_string())?;
    Ok(Arc::new(completer))
}

/// The id the API gives a model: its file name without `.gguf`.
pub fn model_id(model: &Path) -> String {
    let name = model.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    name.strip_suffix(".gguf").unwrap_or(&name).to_string()
}

/// Serves the app (and `api`, if given) on `listener` in the background; its URL.
pub fn serve_in_background(listener: TcpListener, api: Option<Arc<Api>>) -> Result<String, String> {
    let url = format!("http://{}/", listener.local_addr().map_err(|e| e.to_string())?);
    let options = ServeOptions { models_dir: models_dir(), cross_origin_isolation: true, app_dir: None };
    tokio::spawn(server::serve(listener, options, api, std::future::pending()));
    Ok(url)
}
