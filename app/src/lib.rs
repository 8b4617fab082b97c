//! Hearth's UI. The first screen chats with a shipped model (the default, or one picked in the
//! model card) and shows what the runtime found (WebGPU adapter, cross-origin isolation, which
//! runtime build, threads, the model, whether it starts offline); it runs workflows of agents
//! on the model, monitors the engine, and runs the kernel probe.

mod capabilities;
mod chat;
mod engine_client;
mod js_api;
mod kernel_probe;
mod model;
mod model_card;
mod model_files;
mod monitor;
mod offline;
mod workflows;

use leptos::prelude::*;

use capabilities::CapabilitiesPanel;
use chat::{Chat, ChatState};
use engine_client::EngineClient;
use kernel_probe::KernelProbe;
use model::ModelStatus;
use model_card::ModelCard;
use monitor::{Monitor, MonitorHistory};
use workflows::Workflows;

/// The whole app: starts the engine worker, puts what several panels share in the context
/// (the engine, the chat model, the conversation, the monitor's samples), and lays out the
/// first screen.
#[component]
pub fn App() -> impl IntoView {
    let engine = EngineClient::start();
    provide_context(ModelStatus::new(&engine));
    provide_context(RwSignal::new(ChatState::default()));
    provide_context(MonitorHistory::new(&engine));
    provide_context(engine);
    js_api::install(engine);
    let offline = offline::register();
    view! {
        <header>
            <h1>"Hearth"</h1>
            <p class="tagline">"Local LLM inference and agent workflows, entirely in this page."</p>
        </header>
        <main>
            <Chat/>
            <Workflows/>
            <Monitor/>
            <CapabilitiesPanel offline/>
            <ModelCard/>
            <KernelProbe/>
        </main>
    }
}
