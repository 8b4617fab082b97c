//! The models view: which model the chat runs (a shipped one, or a GGUF file the user adds
//! from disk by file picker or drag and drop), its name and size, where it is (on the server,
//! in this browser's model cache, stored in this browser), and the stored files, each with a
//! delete button.

use hearth_api::catalog::{MODEL_CACHE, SHIPPED_MODELS, model_url, shipped_model};
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::File;

use crate::chat::ChatState;
use crate::engine_client::EngineClient;
use crate::model::{ChatModel, ModelState, ModelStatus};
use crate::model_files::{self, StoredModel};

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
    // Read as a property: engines without the Cache API (Servo 0.7) leave it undefined.
    let caches = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("caches"))
        .ok()
        .filter(|c| !c.is_undefined() && !c.is_null())
        .ok_or_else(|| "this engine has no Cache API".to_string())?;
    let caches: web_sys::CacheStorage = caches.unchecked_into();
    let cache: web_sys::Cache = JsFuture::from(caches.open(MODEL_CACHE))
        .await
        .map_err(|e| format!("cannot open the cache: {e:?}"))?
        .unchecked_into();
    let hit = JsFuture::from(cache.match_with_str(url)).await.map_err(|e| format!("{e:?}"))?;
    Ok(!hit.is_undefined())
}

/// Adding a file from disk.
#[derive(Clone, Debug, PartialEq)]
enum Adding {
    Idle,
    Copying { name: String, copied: u64, total: u64 },
    Done(String),
    Failed(String),
}

impl Adding {
    fn state(&self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Copying { .. } => "copying",
            Self::Done(_) => "done",
            Self::Failed(_) => "failed",
        }
    }
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

#[component]
pub fn ModelCard() -> impl IntoView {
    let engine = expect_context::<EngineClient>();
    let status = expect_context::<ModelStatus>();
    let chat = expect_context::<RwSignal<ChatState>>();
    let (selected, model, plan) = (status.selected, status.state, status.plan);
    let busy = move || chat.with(|c| c.reply.is_some()) || model.with(|m| matches!(m, ModelState::Loading { .. }));
    let stored = RwSignal::new(Vec::<StoredModel>::new());
    // Why added files cannot be kept here, if they cannot.
    let no_storage = RwSignal::new(None::<String>);
    let adding = RwSignal::new(Adding::Idle);
    // Whether the stored files have been read (for tests: an empty list then means none).
    let listed = RwSignal::new(false);
    let refresh = move || {
        spawn_local(async move {
            match model_files::list().await {
                Ok(list) => stored.set(list),
                Err(why) => no_storage.set(Some(why)),
            }
            listed.set(true);
        })
    };
    refresh();

    let server = LocalResource::new(move || {
        let url = match selected.get() {
            ChatModel::Shipped(entry) => Some(model_url(entry)),
            // A file the launcher serves (not a `blob:` of one opened here).
            ChatModel::Opened { url, .. } if url.starts_with("models/") => Some(url),
            _ => None,
        };
        async move {
            match url {
                Some(url) => on_server(&url).await,
                None => "not needed: the file is in this browser".to_string(),
            }
        }
    });
    let loaded = Memo::new(move |_| model.with(|m| matches!(m, ModelState::Loaded { .. })));
    let cached = LocalResource::new(move || {
        let picked = selected.get();
        // Looked up again once a model has loaded: loading is what fills the cache.
        loaded.track();
        async move {
            match picked {
                ChatModel::Shipped(entry) => match in_browser_cache(&model_url(entry)).await {
                    Ok(true) => "cached".to_string(),
                    Ok(false) => "not cached yet".to_string(),
                    Err(e) => e,
                },
                ChatModel::Stored(_) => "stored in this browser".to_string(),
                ChatModel::Opened { .. } => "opened for this session only".to_string(),
            }
        }
    });

    // Another model replaces the loaded one (the conversation stays, and goes on with it).
    let run = move |picked: ChatModel| {
        selected.set(picked);
        status.reload(&engine);
    };
    let pick = {
        move |ev: leptos::ev::Event| {
            let key = event_target_value(&ev);
            let picked = match key.split_once(':') {
                Some(("stored", name)) => {
                    stored.with_untracked(|s| s.iter().find(|m| m.name == name).cloned()).map(ChatModel::Stored)
                }
                Some(_) => None,
                None => shipped_model(&key).map(ChatModel::Shipped),
            };
            if let Some(picked) = picked {
                run(picked);
            }
        }
    };
    let add = {
        move |file: File| {
            spawn_local(async move {
                let (name, total) = (file.name(), file.size() as u64);
                if let Err(why) = model_files::check_gguf(&file).await {
                    return adding.set(Adding::Failed(why));
                }
                let stored = match model_files::available().await {
                    Ok(()) => model_files::room_for(&name, total).await,
                    Err(why) => Err(why),
                };
                if let Err(why) = stored {
                    // No OPFS, or no room in it: the file is read from where it is, for this
                    // session only.
                    match web_sys::Url::create_object_url_with_blob(&file) {
                        Ok(url) => {
                            adding.set(Adding::Done(format!("{name}, for this session only ({why})")));
                            run(ChatModel::Opened { name, size: total, url });
                        }
                        Err(e) => adding.set(Adding::Failed(format!("cannot open {name}: {e:?}"))),
                    }
                    return;
                }
                adding.set(Adding::Copying { name: name.clone(), copied: 0, total });
                let progress = |copied| adding.set(Adding::Copying { name: name.clone(), copied, total });
                match model_files::store(&file, progress).await {
                    Ok(model) => {
                        adding.set(Adding::Done(model.name.clone()));
                        refresh();
                        run(ChatModel::Stored(model));
                    }
                    Err(why) => adding.set(Adding::Failed(why)),
                }
            });
        }
    };
    let on_file = {
        move |ev: leptos::ev::Event| {
            let input: Option<web_sys::HtmlInputElement> = ev.target().and_then(|t| t.dyn_into().ok());
            if let Some(file) = input.as_ref().and_then(|i| i.files()).and_then(|files| files.get(0)) {
                add(file);
            }
            // The same file may be picked again (after deleting it, say).
            if let Some(input) = input {
                input.set_value("");
            }
        }
    };
    let on_drop = move |ev: leptos::ev::DragEvent| {
        ev.prevent_default();
        if let Some(file) = ev.data_transfer().and_then(|d| d.files()).and_then(|files| files.get(0)) {
            add(file);
        }
    };
    let delete = move |name: String| {
        spawn_local(async move {
            if let Err(why) = model_files::delete(&name).await {
                adding.set(Adding::Failed(why));
            }
            refresh();
        })
    };

    let adding_text = move || match adding.get() {
        Adding::Idle => String::new(),
        Adding::Copying { name, copied, total } => {
            format!("copying {name} into this browser: {} of {}", megabytes(copied), megabytes(total))
        }
        Adding::Done(name) => format!("added {name}"),
        Adding::Failed(why) => why,
    };
    let (progress_value, progress_max) = (
        move || match adding.get() {
            Adding::Copying { copied, .. } => copied as f64,
            Adding::Done(_) => 1.0,
            _ => 0.0,
        },
        move || match adding.get() {
            Adding::Copying { total, .. } => total.max(1) as f64,
            _ => 1.0,
        },
    );
    view! {
        <section class="card" id="model" on:dragover=|ev: leptos::ev::DragEvent| ev.prevent_default() on:drop=on_drop>
            <h2>"Models"</h2>
            <label>"run "
                <select id="model-select" on:change=pick disabled=busy>
                    {SHIPPED_MODELS.iter().map(|m| {
                        let key = m.id();
                        view! { <option value=key selected=move || selected.get().key() == key>{m.name}</option> }
                    }).collect_view()}
                    {move || stored.get().into_iter().map(|m| {
                        let key = format!("stored:{}", m.name);
                        let shown = key.clone();
                        view! { <option value=key selected=move || selected.get().key() == shown>{m.name}</option> }
                    }).collect_view()}
                </select>
            </label>
            <table>
                <tr><th>"name"</th><td id="model-name">{move || selected.get().name()}</td></tr>
                <tr>
                    <th>"size"</th>
                    <td id="model-size">{move || {
                        let size = selected.get().size();
                        format!("{} ({size} bytes)", megabytes(size))
                    }}</td>
                </tr>
                <tr>
                    <th>"memory"</th>
                    <td id="model-plan">{move || plan.get().unwrap_or_else(|| "read from its header as it loads".into())}</td>
                </tr>
                <tr><th>"server"</th><td id="model-server">{move || server.get().unwrap_or_else(|| "checking…".into())}</td></tr>
                <tr><th>"browser cache"</th><td id="model-cached">{move || cached.get().unwrap_or_else(|| "checking…".into())}</td></tr>
            </table>
            <h3>"Add a GGUF file"</h3>
            <p class="why">"Pick one, or drop it on this card. It is copied into this browser and stays after a reload."</p>
            <input type="file" id="model-file" accept=".gguf" on:change=on_file disabled=busy/>
            <div class="adding">
                <progress id="model-add-progress" value=progress_value max=progress_max></progress>
                <span id="model-add-status" data-state=move || adding.get().state()
                    class=move || if matches!(adding.get(), Adding::Failed(_)) { "err" } else { "" }>{adding_text}</span>
            </div>
            <h3>"Stored in this browser"</h3>
            {move || no_storage.get().map(|why| view! {
                <p class="warn" id="no-storage">{format!("Added files cannot be kept here ({why}); they are loaded for this session only.")}</p>
            })}
            <ul id="stored-models" data-listed=move || listed.get().to_string()>
                {move || stored.get().into_iter().map(|m| {
                    let (run, delete) = (run, delete);
                    let picked = ChatModel::Stored(m.clone());
                    let name = m.name.clone();
                    view! {
                        <li data-name=m.name.clone()>
                            <span>{format!("{} — {}", m.name, megabytes(m.size))}</span>
                            " "
                            <button class="run" disabled=busy on:click=move |_| run(picked.clone())>"run"</button>
                            " "
                            <button class="delete" on:click=move |_| delete(name.clone())>"delete"</button>
                        </li>
                    }
                }).collect_view()}
            </ul>
        </section>
    }
}
