//! The chat screen: a conversation with the loaded model, replies streaming in token by
//! token from the engine worker, a stop button, sampling settings and the speed of the last
//! reply.

use hearth_api::chat::ChatMessage;
use hearth_api::generate::{Backend, BackendChoice, Completion, FinishReason, GenerateParams, Prompt, SamplerConfig};
use hearth_api::protocol::{EngineEvent, EngineRequest, GpuStatus};
use leptos::prelude::*;

use crate::engine_client::{EngineClient, EngineState};
use crate::model::{ModelState, ModelStatus};

/// The conversation: finished turns, the reply streaming in, and how the last one went.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChatState {
    pub messages: Vec<ChatMessage>,
    /// The id and text so far of the reply being generated.
    pub reply: Option<(u32, String)>,
    pub last: Option<Completion>,
    pub error: Option<String>,
}

impl ChatState {
    /// Adds the user's message, and the reply asked for as request `id`.
    pub fn begin_reply(&mut self, text: String, id: u32) {
        self.messages.push(ChatMessage::new("user", text));
        self.reply = Some((id, String::new()));
        self.error = None;
    }

    /// Takes in an event answering the reply.
    fn apply(&mut self, event: &EngineEvent) {
        match event {
            EngineEvent::Delta { id, text } => {
                if let Some((reply_id, reply)) = &mut self.reply
                    && *reply_id == *id
                {
                    reply.push_str(text);
                }
            }
            EngineEvent::Done { id, completion } if self.reply.as_ref().is_some_and(|(r, _)| r == id) => {
                self.reply = None;
                self.messages.push(ChatMessage::new("assistant", completion.text.clone()));
                self.last = Some(completion.clone());
            }
            EngineEvent::Failed { id, message } => {
                if self.reply.as_ref().is_some_and(|(reply_id, _)| reply_id == id) {
                    self.reply = None;
                    // The unanswered message goes back to the input rather than staying half-done.
                    self.messages.pop();
                }
                self.error = Some(message.clone());
            }
            _ => {}
        }
    }
}

#[component]
pub fn Chat() -> impl IntoView {
    let engine = expect_context::<EngineClient>();
    let status = expect_context::<ModelStatus>();
    let chat = expect_context::<RwSignal<ChatState>>();
    let (model, state, selected) = (status.state, engine.state, status.selected);
    let initial_backend = status.backend.get_untracked();
    let input = RwSignal::new(String::new());
    let temperature = RwSignal::new(0.0f32);
    let max_tokens = RwSignal::new(256usize);
    let seed = RwSignal::new(0u64);
    let replying = move || chat.with(|c| c.reply.is_some());
    let ready = move || matches!(model.get(), ModelState::Loaded { .. });

    let send = {
        move || {
            let text = input.get_untracked().trim().to_string();
            if text.is_empty() || !ready() || replying() {
                return;
            }
            input.set(String::new());
            let sampler = SamplerConfig {
                temperature: temperature.get_untracked(),
                top_k: 40,
                top_p: 0.95,
                seed: seed.get_untracked(),
                ..Default::default()
            };
            let params = GenerateParams { max_tokens: max_tokens.get_untracked(), sampler, ..Default::default() };
            let mut messages = chat.with_untracked(|c| c.messages.clone());
            messages.push(ChatMessage::new("user", text.clone()));
            let prompt = Prompt::Chat(messages);
            let id = engine.request(
                |id| EngineRequest::Generate { id, prompt, params: Box::new(params) },
                move |event| chat.update(|c| c.apply(event)),
            );
            chat.update(|c| c.begin_reply(text, id));
        }
    };
    let stop = {
        move |_| {
            if let Some((id, _)) = chat.get_untracked().reply {
                engine.send(&EngineRequest::Stop { id });
            }
        }
    };
    let send_on_click = send;
    let on_key = move |ev: leptos::ev::KeyboardEvent| {
        // Enter sends; Shift+Enter is a new line.
        if ev.key() == "Enter" && !ev.shift_key() {
            ev.prevent_default();
            send();
        }
    };

    // The tab's (or `hearth open`'s window's) title names the model once it is ready.
    Effect::new(move |_| {
        let title = match model.get() {
            ModelState::Loaded { backend, .. } => {
                format!("Hearth · {} on the {}", selected.get().name(), backend_name(backend))
            }
            _ => "Hearth".to_string(),
        };
        document().set_title(&title);
    });
    let model_status = move || match model.get() {
        ModelState::NotLoaded => ("idle", "waiting for the engine…".to_string()),
        ModelState::Loading { loaded, total } => (
            "loading",
            match total {
                Some(total) if total > 0 => format!("loading the model: {:.0}%", loaded as f64 * 100.0 / total as f64),
                _ => format!("loading the model: {:.1} MB", loaded as f64 / 1e6),
            },
        ),
        ModelState::Loaded { bytes, context, ms, backend, note, from_cache } => (
            "loaded",
            format!(
                "{} loaded ({:.1} MB in {:.1} s{}), {context} tokens of context, on the {}{}",
                selected.get().name(),
                bytes as f64 / 1e6,
                ms / 1e3,
                if from_cache { ", from this browser's cache" } else { "" },
                backend_name(backend),
                note.map(|n| format!(" ({n})")).unwrap_or_default(),
            ),
        ),
        ModelState::Failed(why) => ("failed", format!("the model did not load: {why}")),
    };
    let backend = move || {
        let on = match model.get() {
            ModelState::Loaded { backend, .. } => backend,
            _ => Backend::Cpu,
        };
        match (on, state.get()) {
            (Backend::Gpu, EngineState::Ready(c)) => match c.gpu {
                GpuStatus::Available { adapter } => format!("GPU ({})", adapter.name),
                GpuStatus::Unavailable { .. } => "GPU".to_string(),
            },
            (Backend::Cpu, EngineState::Ready(c)) => format!("CPU, {} build, {} thread(s)", c.build.dir(), c.threads),
            (on, _) => backend_name(on).to_string(),
        }
    };
    let backend_data = move || match model.get() {
        ModelState::Loaded { backend, .. } => backend_name(backend),
        _ => "",
    };
    // Loads the model again onto the backend picked in the settings.
    let switch_backend = {
        move |ev: leptos::ev::Event| {
            status.backend.set(event_target_value(&ev).parse().unwrap_or_default());
            status.reload(&engine);
        }
    };
    // Loads the model again with the context picked in the settings (its KV cache's size).
    let set_context = {
        move |ev: leptos::ev::Event| {
            if let Ok(n) = event_target_value(&ev).parse::<usize>().map(|n| n.max(1))
                && n != status.context.get_untracked()
            {
                status.context.set(n);
                status.reload(&engine);
            }
        }
    };
    let context = status.context;
    let stats = move || {
        chat.with(|c| {
            c.last.as_ref().map(|done| {
                let t = done.timings;
                let per_s = |n: usize, ms: f64| if ms > 0.0 { n as f64 * 1e3 / ms } else { 0.0 };
                let finish = match done.finish_reason {
                    FinishReason::Stop => "stop",
                    FinishReason::Length => "length",
                    FinishReason::Cancelled => "cancelled",
                    FinishReason::ToolCalls => "tool calls",
                };
                view! {
                    <p id="chat-stats" data-finish=finish data-completion-tokens=done.completion_tokens.to_string()
                        data-backend=backend_data>
                        {format!(
                            "{} prompt tokens ({} new) at {:.0} tok/s, {} reply tokens at {:.1} tok/s ({:.1} ms per step) — {} — finish: {finish}",
                            done.prompt_tokens,
                            t.prefill_tokens,
                            per_s(t.prefill_tokens, t.prefill_ms),
                            done.completion_tokens,
                            per_s(done.completion_tokens, t.decode_ms),
                            t.decode_ms / done.completion_tokens.max(1) as f64,
                            backend(),
                        )}
                    </p>
                }
            })
        })
    };

    view! {
        <section class="card chat" id="chat">
            <h2>"Chat"</h2>
            <p id="model-status" data-state=move || model_status().0>{move || model_status().1}</p>
            <div id="chat-log" aria-live="polite">
                {move || chat.with(|c| c.messages.iter().map(|m| view! {
                    <div class=format!("msg {}", m.role)><span class="role">{m.role.clone()}</span><p>{m.content.clone()}</p></div>
                }).collect_view())}
                {move || chat.with(|c| c.reply.as_ref().map(|(_, text)| view! {
                    <div class="msg assistant streaming"><span class="role">"assistant"</span><p>{text.clone()}</p></div>
                }))}
            </div>
            {move || chat.with(|c| c.error.clone()).map(|e| view! { <p class="err" id="chat-error">{e}</p> })}
            <div class="chat-input">
                <textarea id="chat-input" rows="2" placeholder="Message the model (Enter sends, Shift+Enter for a new line)"
                    aria-label="Message"
                    prop:value=move || input.get()
                    on:input=move |ev| input.set(event_target_value(&ev))
                    on:keydown=on_key></textarea>
                <button id="chat-send" on:click=move |_| send_on_click() disabled=move || !ready() || replying()>"Send"</button>
                <button id="chat-stop" on:click=stop disabled=move || !replying()>"Stop"</button>
            </div>
            <details class="settings">
                <summary>"Settings"</summary>
                <label>"backend "
                    <select id="chat-backend" on:change=switch_backend disabled=replying>
                        <option value="auto" selected=move || initial_backend == BackendChoice::Auto>"auto"</option>
                        <option value="gpu" selected=move || initial_backend == BackendChoice::Gpu>"GPU"</option>
                        <option value="cpu" selected=move || initial_backend == BackendChoice::Cpu>"CPU"</option>
                    </select>
                </label>
                <label>"context "
                    <input id="chat-context" type="number" min="256" step="256" disabled=replying
                        title="Positions of context (the KV cache's size); changing it loads the model again"
                        prop:value=move || context.get().to_string()
                        on:change=set_context/>
                </label>
                <label>" temperature "
                    <input id="chat-temperature" type="number" min="0" max="2" step="0.1"
                        prop:value=move || temperature.get().to_string()
                        on:change=move |ev| temperature.set(event_target_value(&ev).parse().unwrap_or(0.0))/>
                </label>
                <label>" max tokens "
                    <input id="chat-max-tokens" type="number" min="1" max="2048"
                        prop:value=move || max_tokens.get().to_string()
                        on:change=move |ev| max_tokens.set(event_target_value(&ev).parse().unwrap_or(256))/>
                </label>
                <label>" seed "
                    <input id="chat-seed" type="number" min="0"
                        prop:value=move || seed.get().to_string()
                        on:change=move |ev| seed.set(event_target_value(&ev).parse().unwrap_or(0))/>
                </label>
            </details>
            {stats}
        </section>
    }
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Gpu => "GPU",
        Backend::Cpu => "CPU",
    }
}
