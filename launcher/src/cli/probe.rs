//! `hearth probe`: the page's capabilities once its model has loaded, as JSON.

use std::process::ExitCode;
use std::time::Duration;

use hearth::engines::{self, EngineKind};
use hearth_core::engine::BackendChoice;

use super::{run_async, say, serve_on_free_port};

#[derive(clap::Args)]
pub struct ProbeArgs {
    #[arg(long, default_value = "chromium")]
    engine: EngineKind,
    #[arg(long, default_value = "auto")]
    backend: BackendChoice,
}

pub fn run(ProbeArgs { engine, backend }: ProbeArgs) -> ExitCode {
    run_async(async move {
        let url = serve_on_free_port(None).await?;
        let page = engines::open_page(engine, &engines::page_url(&url, backend)).await?;
        let loaded = hearth::page::wait_for_model(page.as_ref(), Duration::from_secs(600)).await;
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
