//! The chat's model: a choice of the shipped models, and the chosen one's name, size, and where
//! it is (on the server, in this browser's cache).

use hearth_core::catalog::{SHIPPED_MODELS, model_url, shipped_model};
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::engine_client::EngineClient;

/// Cache Storage bucket the app keeps model files in.
pub const MODEL_CACHE: &str = "hearth-models";

async fn on_server(url: &str) -> String {
    use gloo_net::http::{Method, RequestBuilder};
    let request = match RequestBuilder::new(url).method(Method::HEAD).build() {
        Ok(request) => request,
        Err(e) => return format!("cannot ask the server: {e}"),
    };
    match request.send().await {
        Ok(resp) if resp.ok() => "available on this server".to_string(),
        Ok(resp) if resp.status() == 404 => {
            "not on this server: run scripts/fetch-model.sh, then restart hearth serve".to_string()
        }
        Ok(resp) => format!("the server answered {}", resp.status()),
        Err(e) => format!("cannot ask the server: {e}"),
    }
}

async fn in_browser_cache(url: &str) -> Result<bool, String> {
    let window = web_sys::window().ok_or("no window")?;
    let caches = window.caches().map_err(|_| "this engine has no Cache API".to_string())?;
    let cache: web_sys::Cache = JsFuture::from(caches.open(MODEL_CACHE))
        .await
        .map_err(|e| format!("cannot open the cache: {e:?}"))?
        .unchecked_into();
    let hit = JsFuture::from(cache.match_with_str(url)).await.map_err(|e| format!("{e:?}"))?;
    Ok(!hit.is_undefined())
}

#[component]
pub fn ModelCard(engine: EngineClient) -> impl IntoView {
    let selected = engine.selected;
    let chat = engine.chat;
    let busy = move || chat.with(|c| c.reply.is_some());
    let server = LocalResource::new(move || {
        let url = model_url(selected.get());
        async move { on_server(&url).await }
    });
    let cached = LocalResource::new(move || {
        let url = model_url(selected.get());
        async move {
            match in_browser_cache(&url).await {
                Ok(true) => "cached".to_string(),
                Ok(false) => "not cached yet".to_string(),
                Err(e) => e,
            }
        }
    });
    // Another model replaces the loaded one (the conversation stays, and goes on with it).
    let pick = move |ev: leptos::ev::Event| {
        if let Some(entry) = shipped_model(&event_target_value(&ev)) {
            selected.set(entry);
            engine.reload_model();
        }
    };
    view! {
        <section class="card" id="model">
            <h2>"Model"</h2>
            <label>"run "
                <select id="model-select" on:change=pick disabled=busy>
                    {SHIPPED_MODELS.iter().map(|m| view! {
                        <option value=m.id() selected=move || selected.get().id() == m.id()>{m.name}</option>
                    }).collect_view()}
                </select>
            </label>
            <table>
                <tr><th>"name"</th><td id="model-name">{move || selected.get().name}</td></tr>
                <tr>
                    <th>"size"</th>
                    <td id="model-size">{move || {
                        let size = selected.get().size;
                        format!("{:.1} MB ({size} bytes)", size as f64 / 1e6)
                    }}</td>
                </tr>
                <tr><th>"server"</th><td id="model-server">{move || server.get().unwrap_or_else(|| "checking…".into())}</td></tr>
                <tr><th>"browser cache"</th><td id="model-cached">{move || cached.get().unwrap_or_else(|| "checking…".into())}</td></tr>
            </table>
        </section>
    }
}
