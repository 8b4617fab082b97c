//! The default model: name, size, and where it is (on the server, in this browser's cache).

use hearth_core::catalog::{DEFAULT_MODEL, model_url};
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

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
pub fn ModelCard() -> impl IntoView {
    let url = model_url(&DEFAULT_MODEL);
    let server = LocalResource::new({
        let url = url.clone();
        move || {
            let url = url.clone();
            async move { on_server(&url).await }
        }
    });
    let cached = LocalResource::new(move || {
        let url = url.clone();
        async move {
            match in_browser_cache(&url).await {
                Ok(true) => "cached".to_string(),
                Ok(false) => "not cached yet".to_string(),
                Err(e) => e,
            }
        }
    });
    view! {
        <section class="card" id="model">
            <h2>"Default model"</h2>
            <table>
                <tr><th>"name"</th><td id="model-name">{DEFAULT_MODEL.name}</td></tr>
                <tr>
                    <th>"size"</th>
                    <td id="model-size">{format!("{:.1} MB ({} bytes)", DEFAULT_MODEL.size as f64 / 1e6, DEFAULT_MODEL.size)}</td>
                </tr>
                <tr><th>"server"</th><td id="model-server">{move || server.get().unwrap_or_else(|| "checking…".into())}</td></tr>
                <tr><th>"browser cache"</th><td id="model-cached">{move || cached.get().unwrap_or_else(|| "checking…".into())}</td></tr>
            </table>
        </section>
    }
}
