//! `--engine native|chromium|servo`: where the engine runs. `native` is the core without a web
//! engine; `chromium` and `servo` open the app served on loopback in that web engine and drive
//! the engine in its page, so what runs is exactly what a user's browser runs.

use std::path::Path;
use std::sync::Arc;

use hearth_api::catalog::{DEFAULT_MODEL, SHIPPED_MODELS, models_dir};
use hearth_core::engine::BackendChoice;
use tokio::net::TcpListener;

use crate::completer::{Completer, NativeCompleter, PageCompleter};
use crate::openai::Api;
use crate::page::Page;
use crate::server::{self, ServeOptions, SessionModel};

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

/// How a page is told to run `model`: the query it is opened with, and the file the server
/// serves for it. The default model needs neither; another shipped model is `?model=<id>`,
/// served from the models folder and kept in the page's model cache; any other file is
/// served as `/models/<id>.gguf` for this run and read by the page for this session only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageModel {
    pub query: String,
    pub session: Option<SessionModel>,
}

impl PageModel {
    pub fn of(model: &Path) -> Result<Self, String> {
        let size =
            std::fs::metadata(model).map_err(|e| format!("cannot open the model {}: {e}", model.display()))?.len();
        let folder = models_dir();
        if let Some(entry) = SHIPPED_MODELS.into_iter().find(|m| model == folder.join(m.file)) {
            let query = if *entry == DEFAULT_MODEL { String::new() } else { format!("&model={}", entry.id()) };
            return Ok(Self { query, session: None });
        }
        // Characters a URL path keeps as they are, and never a shipped model's id (whose
        // cached copy the page would take it for).
        let mut id: String = model_id(model)
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' })
            .collect();
        if id.is_empty() || id.starts_with('.') || SHIPPED_MODELS.iter().any(|m| m.id() == id) {
            id.insert_str(0, "file-");
        }
        let query = format!("&model={id}&model-size={size}");
        Ok(Self { query, session: Some(SessionModel { name: format!("{id}.gguf"), path: model.to_owned() }) })
    }
}

/// The page's URL for a backend choice and a model, at `n_ctx` positions of context.
pub fn model_page_url(base: &str, backend: BackendChoice, model: &PageModel, n_ctx: usize) -> String {
    format!("{}{}&ctx={n_ctx}", page_url(base, backend), model.query)
}

/// The engine behind a generation: the model natively, or the app's page at `url`, whose
/// server serves `model` (see [`PageModel`]).
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
    let page = open_page(kind, &model_page_url(url, backend, &PageModel::of(model)?, n_ctx)).await?;
    let completer = PageCompleter::start(page).await.map_err(|e| e.to_string())?;
    Ok(Arc::new(completer))
}

/// The id the API gives a model: its file name without `.gguf`.
pub fn model_id(model: &Path) -> String {
    let name = model.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    name.strip_suffix(".gguf").unwrap_or(&name).to_string()
}

/// Serves the app (and `api`, if given, and a model from the command line) on `listener` in
/// the background; its URL.
pub fn serve_in_background(
    listener: TcpListener,
    api: Option<Arc<Api>>,
    session_model: Option<SessionModel>,
) -> Result<String, String> {
    let url = format!("http://{}/", listener.local_addr().map_err(|e| e.to_string())?);
    let options = ServeOptions::new(session_model);
    tokio::spawn(server::serve(listener, options, api, std::future::pending()));
    Ok(url)
}
