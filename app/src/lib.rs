//! Hearth's UI. The first screen chats with a shipped model (the default, or one picked in the
//! model card) and shows what the runtime found (WebGPU adapter, cross-origin isolation, which
//! runtime build, threads, the model, whether it starts offline); it runs workflows of agents
//! on the model, monitors the engine, and runs the kernel probe.

mod capabilities;
mod chat;
mod engine_client;
mod js_api;
mod kernel_probe;
mod model_card;
mod model_files;
mod monitor;
mod offline;
mod workflows;

use leptos::prelude::*;

use capabilities::CapabilitiesPanel;
use chat::Chat;
use engine_client::EngineClient;
use kernel_probe::KernelProbe;
use model_card::ModelCard;
use monitor::Monitor;
use workflows::Workflows;

/// The whole app: starts the engine worker and lays out the first screen.
#[component]
pub fn App() -> impl IntoView {
    let engine = EngineClient::start();
    js_api::install(engine.clone());
    let offline = offline::register();
    view! {
        <header>
            <h1>"Hearth"</h1>
            <p class="tagline">"Local LLM inference and agent workflows, entirely in this page."</p>
        </header>
        <main>
            <Chat engine=engine.clone()/>
            <Workflows engine=engine.clone()/>
            <Monitor engine=engine.clone()/>
            <CapabilitiesPanel engine=engine.clone() offline/>
            <ModelCard engine=engine.clone()/>
            <KernelProbe engine=engine/>
        </main>
    }
}
