//! The installed app: registers the service worker (`sw.js`, which the build writes with the
//! list of the app shell's files, see app/pwa/sw.js) and tells whether this app would start
//! with no network. The model itself is kept by the engine worker in the model cache.

use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{ServiceWorkerContainer, ServiceWorkerRegistration, ServiceWorkerState};

use crate::model_files::error_text;

/// Where the app shell stands.
#[derive(Clone, Debug, PartialEq)]
pub enum OfflineState {
    /// This engine has no service workers (Servo 0.7, or a page that is not a secure context).
    Unsupported(String),
    /// The service worker is caching the app shell.
    Installing,
    /// The app shell is cached: the app starts with no network.
    Ready,
    /// A newer build is cached and waits; it is used from the next start, never mid-session.
    UpdateWaiting,
    Failed(String),
}

impl OfflineState {
    /// As the `data-state` attribute spells it, for tests.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Unsupported(_) => "unsupported",
            Self::Installing => "installing",
            Self::Ready => "ready",
            Self::UpdateWaiting => "update-waiting",
            Self::Failed(_) => "failed",
        }
    }
}

/// Registers the service worker and returns its state, which changes as it installs.
pub fn register() -> ReadSignal<OfflineState> {
    let (state, set_state) = signal(OfflineState::Installing);
    let container = web_sys::window()
        .map(|w| w.navigator())
        .and_then(|nav| js_sys::Reflect::get(&nav, &JsValue::from_str("serviceWorker")).ok())
        .filter(|sw| !sw.is_undefined() && !sw.is_null());
    let Some(container) = container else {
        set_state.set(OfflineState::Unsupported("this engine has no service workers".into()));
        return state;
    };
    let container: ServiceWorkerContainer = container.unchecked_into();
    wasm_bindgen_futures::spawn_local(async move {
        if let Err(e) = JsFuture::from(container.register("sw.js")).await {
            set_state.set(OfflineState::Failed(format!("the service worker did not install: {}", error_text(&e))));
            return;
        }
        // `ready` resolves once a worker is active, i.e. once it has cached the whole shell.
        let Ok(ready) = container.ready() else { return };
        match JsFuture::from(ready).await {
            Ok(registration) => watch(registration.unchecked_into(), set_state),
            Err(e) => set_state.set(OfflineState::Failed(error_text(&e))),
        }
    });
    state
}

/// Shows `Ready`, or `UpdateWaiting` while a newer build waits for the next start.
fn watch(registration: ServiceWorkerRegistration, set_state: WriteSignal<OfflineState>) {
    let shown = |registration: &ServiceWorkerRegistration| {
        if registration.waiting().is_some() { OfflineState::UpdateWaiting } else { OfflineState::Ready }
    };
    set_state.set(shown(&registration));
    let watched = registration.clone();
    let on_update = Closure::<dyn FnMut()>::new(move || {
        let Some(incoming) = watched.installing() else { return };
        let registration = watched.clone();
        // Installed, it waits for the next start; in a session its worker does not serve
        // (the first after installing) it takes over at once.
        let on_state = Closure::<dyn FnMut()>::new(move || {
            let waiting = registration.waiting().is_some_and(|w| w.state() == ServiceWorkerState::Installed);
            set_state.set(if waiting { OfflineState::UpdateWaiting } else { OfflineState::Ready });
        });
        incoming.set_onstatechange(Some(on_state.as_ref().unchecked_ref()));
        on_state.forget();
    });
    registration.set_onupdatefound(Some(on_update.as_ref().unchecked_ref()));
    // The registration lives as long as the page; so does its handler.
    on_update.forget();
}

/// The runtime panel's row: can this app start offline.
#[component]
pub fn OfflineRow(state: ReadSignal<OfflineState>) -> impl IntoView {
    let text = move || match state.get() {
        OfflineState::Unsupported(why) => format!("no: {why}"),
        OfflineState::Installing => "caching the app…".to_string(),
        OfflineState::Ready => "ready: the app starts with no network (the model once it is cached)".to_string(),
        OfflineState::UpdateWaiting => "ready; a newer version is cached and starts next time".to_string(),
        OfflineState::Failed(why) => format!("no: {why}"),
    };
    let class = move || match state.get() {
        OfflineState::Ready | OfflineState::UpdateWaiting => "ok",
        OfflineState::Installing => "",
        OfflineState::Unsupported(_) => "warn",
        OfflineState::Failed(_) => "err",
    };
    view! {
        <tr>
            <th>"offline"</th>
            <td id="offline-status" class=class data-state=move || state.get().name()>{text}</td>
        </tr>
    }
}
