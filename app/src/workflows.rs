//! The workflows view: pick an example or load a TOML file, run it on the loaded model (each
//! agent in a Web Worker of its own, the hub in the engine worker), pause, step or stop it;
//! a live timeline of what the agents said and did, and each agent's state and counts.
//!
//! The transcript is kept in the browser as it comes (`localStorage`: its writes are
//! synchronous, so a reload at any moment keeps every line that arrived), and a reload shows
//! the last run again, marked interrupted if it had not ended.

use hearth_api::agents::{AgentState, TranscriptEvent};
use hearth_api::protocol::{AgentModule, EngineEvent, EngineRequest, WorkflowControl};
use hearth_api::workflow::Workflow;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use wasm_bindgen_futures::{JsFuture, spawn_local};

use crate::engine_client::EngineClient;
use crate::model::ModelStatus;

/// The example workflows in `examples/` that run in the page (LLM agents only).
pub const EXAMPLES: [(&str, &str); 4] = [
    ("debate", include_str!("../../examples/debate.toml")),
    ("plan-execute-critique", include_str!("../../examples/plan-execute-critique.toml")),
    ("map-reduce-summary", include_str!("../../examples/map-reduce-summary.toml")),
    // Its two custom agents' .wasm files (target/agents/, built by scripts/build-agents.sh)
    // are added with the modules input.
    ("custom-agents", include_str!("../../examples/custom-agents.toml")),
];

#[derive(Clone, Debug, Default, PartialEq)]
pub enum RunStatus {
    #[default]
    Idle,
    Running,
    /// Paused before this logical step.
    Held(u32),
    Finished,
    /// Stopped from here before this logical step.
    Stopped(u32),
    Failed(String),
    /// The page was reloaded (or closed) while it ran; the transcript so far is kept.
    Interrupted,
}

impl RunStatus {
    fn name(&self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Running => "running",
            Self::Held(_) => "paused",
            Self::Finished => "finished",
            Self::Stopped(_) => "stopped",
            Self::Failed(_) => "failed",
            Self::Interrupted => "interrupted",
        }
    }
}

/// One agent's row: its live state and what it did so far.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentRow {
    pub name: String,
    pub state: AgentState,
    pub messages: usize,
    pub llm_calls: usize,
    pub tokens: usize,
    pub tool_calls: usize,
    pub faults: usize,
    pub restarts: usize,
}

/// The workflow run the engine reports on (one at a time).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkflowRun {
    pub id: u32,
    pub agents: Vec<AgentRow>,
    pub timeline: Vec<TranscriptEvent>,
    /// The transcript as the engine sent it (JSON lines), which is what is kept.
    lines: Vec<String>,
    pub status: RunStatus,
}

/// Where the last run's transcript is kept.
const SAVED_RUN: &str = "hearth.workflow.last-run";

/// The last run as kept: its transcript, and how it ended (`None`: it had not).
#[derive(Serialize, Deserialize)]
struct SavedRun {
    lines: Vec<String>,
    ended: Option<Result<(), String>>,
    #[serde(default)]
    stopped_before: Option<u32>,
}

fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

impl WorkflowRun {
    /// A new run, kept (in place of the last) from the start.
    pub fn started(id: u32) -> Self {
        let run = WorkflowRun { id, status: RunStatus::Running, ..WorkflowRun::default() };
        run.save();
        run
    }

    /// The last run kept in this browser, if any.
    pub fn restore() -> Self {
        let saved = local_storage()
            .and_then(|s| s.get_item(SAVED_RUN).ok().flatten())
            .and_then(|text| serde_json::from_str::<SavedRun>(&text).ok());
        let Some(saved) = saved else { return WorkflowRun::default() };
        let mut run = WorkflowRun::default();
        for line in saved.lines {
            if let Ok(event) = serde_json::from_str::<TranscriptEvent>(&line) {
                run.record(event);
                run.lines.push(line);
            }
        }
        run.status = match (saved.ended, saved.stopped_before) {
            (Some(Ok(())), _) => RunStatus::Finished,
            (Some(Err(e)), _) => RunStatus::Failed(e),
            (None, Some(step)) => RunStatus::Stopped(step),
            (None, None) => RunStatus::Interrupted,
        };
        run
    }

    fn save(&self) {
        let ended = match &self.status {
            RunStatus::Finished => Some(Ok(())),
            RunStatus::Failed(e) => Some(Err(e.clone())),
            _ => None,
        };
        let stopped_before = match self.status {
            RunStatus::Stopped(step) => Some(step),
            _ => None,
        };
        let saved = SavedRun { lines: self.lines.clone(), ended, stopped_before };
        if let (Some(storage), Ok(text)) = (local_storage(), serde_json::to_string(&saved))
            && let Err(e) = storage.set_item(SAVED_RUN, &text)
        {
            web_sys::console::warn_1(&format!("the workflow's transcript was not kept: {e:?}").into());
        }
    }

    /// Applies a workflow event from the engine; false for any other event.
    pub fn apply(&mut self, event: &EngineEvent) -> bool {
        match event {
            EngineEvent::Transcript { id, line } => {
                if *id != self.id {
                    // A run started elsewhere (`window.hearth`): show it from here on.
                    *self = WorkflowRun::started(*id);
                }
                match serde_json::from_str::<TranscriptEvent>(line) {
                    Ok(event) => {
                        self.record(event);
                        self.lines.push(line.clone());
                    }
                    Err(e) => self.status = RunStatus::Failed(format!("an unreadable transcript line: {e}")),
                }
                self.save();
            }
            EngineEvent::AgentState { id, agent, state } if *id == self.id => {
                if let Some(row) = self.agents.get_mut(*agent) {
                    row.state = *state;
                }
            }
            EngineEvent::WorkflowHeld { id, step } if *id == self.id => {
                self.status = step.map_or(RunStatus::Running, RunStatus::Held);
            }
            EngineEvent::WorkflowEnded { id, error, stopped_before } if *id == self.id => {
                self.status = match (error, stopped_before) {
                    (Some(e), _) => RunStatus::Failed(e.clone()),
                    (None, Some(step)) => RunStatus::Stopped(*step),
                    (None, None) => RunStatus::Finished,
                };
                self.save();
            }
            // Refused before it started (no model yet, say).
            EngineEvent::Failed { id, message } if *id == self.id && self.status == RunStatus::Running => {
                self.status = RunStatus::Failed(message.clone());
            }
            EngineEvent::AgentState { .. } | EngineEvent::WorkflowHeld { .. } | EngineEvent::WorkflowEnded { .. } => {}
            _ => return false,
        }
        true
    }

    fn record(&mut self, event: TranscriptEvent) {
        let row =
            |agents: &mut Vec<AgentRow>, name: &str| -> Option<usize> { agents.iter().position(|a| a.name == name) };
        match &event {
            TranscriptEvent::Started { agents, .. } => {
                self.agents = agents
                    .iter()
                    .map(|name| AgentRow {
                        name: name.clone(),
                        state: AgentState::Idle,
                        messages: 0,
                        llm_calls: 0,
                        tokens: 0,
                        tool_calls: 0,
                        faults: 0,
                        restarts: 0,
                    })
                    .collect();
            }
            TranscriptEvent::LlmCall { agent, completion_tokens, .. } => {
                if let Some(i) = row(&mut self.agents, agent) {
                    self.agents[i].llm_calls += 1;
                    self.agents[i].tokens += completion_tokens;
                }
            }
            TranscriptEvent::ToolCall { agent, .. } => {
                if let Some(i) = row(&mut self.agents, agent) {
                    self.agents[i].tool_calls += 1;
                }
            }
            TranscriptEvent::Message { from, .. } => {
                if let Some(i) = row(&mut self.agents, from) {
                    self.agents[i].messages += 1;
                }
            }
            TranscriptEvent::Fault { agent, .. } => {
                if let Some(i) = row(&mut self.agents, agent) {
                    self.agents[i].faults += 1;
                }
            }
            TranscriptEvent::Restart { agent, .. } => {
                if let Some(i) = row(&mut self.agents, agent) {
                    self.agents[i].restarts += 1;
                }
            }
            _ => {}
        }
        self.timeline.push(event);
    }
}

/// The kind of a transcript event (its `event` field) and a line for the timeline.
fn describe(event: &TranscriptEvent) -> (&'static str, Option<u32>, String) {
    use TranscriptEvent as E;
    match event {
        E::Started { workflow, seed, agents, backend, .. } => {
            ("started", None, format!("{workflow}, seed {seed}, on the {backend}: {}", agents.join(", ")))
        }
        E::LlmCall { step, agent, prompt_tokens, completion_tokens, finish_reason, .. } => (
            "llm_call",
            Some(*step),
            format!(
                "{agent} asked the LLM: {prompt_tokens} prompt tokens, {completion_tokens} back ({finish_reason:?})"
            ),
        ),
        E::ToolCall { step, agent, tool, args, ok, output, .. } => {
            let outcome = if *ok { "→" } else { "failed:" };
            ("tool_call", Some(*step), format!("{agent} called {tool}({args}) {outcome} {output}"))
        }
        E::Log { step, agent, text } => ("log", Some(*step), format!("{agent} logged: {text}")),
        E::Message { step, from, content, .. } => ("message", Some(*step), format!("{from}: {content}")),
        E::Fault { step, agent, kind, detail, .. } => {
            ("fault", Some(*step), format!("{agent} faulted ({kind:?}): {detail}"))
        }
        E::Restart { step, agent, attempt, backoff_ms } => {
            ("restart", Some(*step), format!("{agent} restarted (attempt {attempt}, after {backoff_ms} ms)"))
        }
        E::GaveUp { step, agent } => ("gave_up", Some(*step), format!("{agent}'s policy gave up on it")),
        E::Skipped { step, agent, turn } => ("skipped", Some(*step), format!("{agent} skipped turn {turn}")),
        E::Escalated { step, agent } => ("escalated", Some(*step), format!("{agent}'s fault stops the workflow")),
        E::Finished { steps, messages, completion_tokens, faults, restarts } => (
            "finished",
            None,
            format!(
                "finished: {steps} steps, {messages} messages, {completion_tokens} tokens, {faults} faults, {restarts} restarts"
            ),
        ),
    }
}

fn state_name(state: AgentState) -> &'static str {
    match state {
        AgentState::Idle => "idle",
        AgentState::Thinking => "thinking",
        AgentState::Waiting => "waiting",
        AgentState::Faulted => "faulted",
        AgentState::Restarted => "restarted",
        AgentState::GaveUp => "gave up",
    }
}

#[component]
pub fn Workflows() -> impl IntoView {
    let engine = expect_context::<EngineClient>();
    let model = expect_context::<ModelStatus>();
    // The run the engine reports on: this panel's, or one a script started (`window.hearth`).
    let run = RwSignal::new(WorkflowRun::restore());
    engine.listen(move |event| {
        run.update(|run| {
            run.apply(event);
        })
    });
    let source = RwSignal::new(EXAMPLES[0].1.to_string());
    let seed = RwSignal::new(String::new());
    let loaded_from = RwSignal::new(None::<String>);
    // The custom agents' modules the user added, by file name.
    let modules = RwSignal::new(Vec::<AgentModule>::new());
    let checked = Memo::new(move |_| {
        let workflow = Workflow::from_toml(&source.get()).map_err(|e| e.to_string())?;
        modules.with(|modules| {
            let missing = workflow.agents.iter().find_map(|a| {
                a.module.as_ref().filter(|path| AgentModule::find(modules, path).is_none()).map(|path| (&a.name, path))
            });
            match missing {
                Some((agent, path)) => Err(format!("agent {agent} runs the module {path}: add that .wasm file")),
                None => Ok(workflow.name.clone()),
            }
        })
    });
    let seed_value = Memo::new(move |_| {
        let text = seed.get();
        let text = text.trim();
        if text.is_empty() {
            Ok(None)
        } else {
            text.parse::<u64>().map(Some).map_err(|_| format!("not a seed: {text}"))
        }
    });
    // Why a run cannot start now, if it cannot.
    let blocked = Memo::new(move |_| {
        if !model.is_loaded() {
            return Some("waiting for the model".to_string());
        }
        if matches!(run.get().status, RunStatus::Running | RunStatus::Held(_)) {
            return Some("a workflow is running".to_string());
        }
        if let Err(e) = checked.get() {
            return Some(e);
        }
        seed_value.get().err()
    });

    let start = {
        move |_| {
            let Ok(seed) = seed_value.get_untracked() else { return };
            let (toml, modules) = (source.get_untracked(), modules.get_untracked());
            // Its events reach `run` as every workflow's do (see `listen` above).
            let id = engine.request(|id| EngineRequest::RunWorkflow { id, toml, seed, modules }, |_| {});
            run.set(WorkflowRun::started(id));
        }
    };
    let control = {
        move |control: WorkflowControl| {
            let id = run.get_untracked().id;
            engine.send(&EngineRequest::ControlWorkflow { id, control });
        }
    };
    let (pause_control, step_control, stop_control) = (control, control, control);
    let pick_example = move |ev: web_sys::Event| {
        let name = event_target_value(&ev);
        if let Some((_, toml)) = EXAMPLES.iter().find(|(n, _)| *n == name) {
            source.set(toml.to_string());
            loaded_from.set(None);
        }
    };
    let load_file = move |ev: web_sys::Event| {
        let input: web_sys::HtmlInputElement = event_target(&ev);
        let Some(file) = input.files().and_then(|files| files.get(0)) else { return };
        spawn_local(async move {
            match JsFuture::from(file.text()).await.ok().and_then(|t| t.as_string()) {
                Some(text) => {
                    source.set(text);
                    loaded_from.set(Some(file.name()));
                }
                None => loaded_from.set(Some(format!("{}: not a text file", file.name()))),
            }
        });
    };

    let load_modules = move |ev: web_sys::Event| {
        let input: web_sys::HtmlInputElement = event_target(&ev);
        let Some(files) = input.files() else { return };
        let files: Vec<web_sys::File> = (0..files.length()).filter_map(|i| files.get(i)).collect();
        spawn_local(async move {
            let mut loaded = Vec::new();
            for file in files {
                if let Ok(bytes) = JsFuture::from(file.array_buffer()).await {
                    loaded.push(AgentModule { path: file.name(), wasm: js_sys::Uint8Array::new(&bytes).to_vec() });
                }
            }
            modules.set(loaded);
        });
    };

    view! {
        <section class="card workflows" id="workflows">
            <h2>"Workflows"</h2>
            <div class="workflow-source">
                <label>
                    "Example "
                    <select id="workflow-example" on:change=pick_example>
                        {EXAMPLES.iter().map(|(name, _)| view! { <option value=*name>{*name}</option> }).collect_view()}
                    </select>
                </label>
                <label>"or a TOML file " <input type="file" id="workflow-file" accept=".toml,text/plain" on:change=load_file/></label>
                <label>
                    "Custom agents' modules "
                    <input type="file" id="workflow-modules" accept=".wasm,application/wasm" multiple on:change=load_modules/>
                </label>
                <label>
                    "Seed "
                    <input id="workflow-seed" type="text" inputmode="numeric" placeholder="the file's"
                        prop:value=seed on:input=move |ev| seed.set(event_target_value(&ev))/>
                </label>
                <span class="why">{move || loaded_from.get().map(|name| format!("loaded from {name}"))}</span>
            </div>
            <textarea id="workflow-toml" rows="10" spellcheck="false" aria-label="The workflow (TOML)"
                prop:value=source on:input=move |ev| source.set(event_target_value(&ev))></textarea>
            <div class="workflow-controls">
                <button id="workflow-run" disabled=move || blocked.get().is_some() on:click=start>"Run"</button>
                <button id="workflow-pause"
                    disabled=move || !matches!(run.get().status, RunStatus::Running | RunStatus::Held(_))
                    on:click=move |_| {
                        let paused = matches!(run.get_untracked().status, RunStatus::Held(_));
                        pause_control(if paused { WorkflowControl::Resume } else { WorkflowControl::Pause });
                    }>
                    {move || if matches!(run.get().status, RunStatus::Held(_)) { "Resume" } else { "Pause" }}
                </button>
                <button id="workflow-step" disabled=move || !matches!(run.get().status, RunStatus::Held(_))
                    on:click=move |_| step_control(WorkflowControl::Step)>"Step"</button>
                <button id="workflow-stop"
                    disabled=move || !matches!(run.get().status, RunStatus::Running | RunStatus::Held(_))
                    on:click=move |_| stop_control(WorkflowControl::Stop)>"Stop"</button>
                <span id="workflow-status" data-state=move || run.get().status.name()>
                    {move || match run.get().status {
                        RunStatus::Idle => blocked.get().unwrap_or_else(|| {
                            format!("ready to run {}", checked.get().unwrap_or_default())
                        }),
                        RunStatus::Running => "running".to_string(),
                        RunStatus::Held(step) => format!("paused before step {step}"),
                        RunStatus::Finished => "finished".to_string(),
                        RunStatus::Stopped(step) => format!("stopped before step {step}"),
                        RunStatus::Failed(e) => e,
                        RunStatus::Interrupted => {
                            "interrupted: the page was reloaded while it ran (the transcript so far is kept)".to_string()
                        }
                    }}
                </span>
            </div>
            <table id="workflow-agents">
                <thead>
                    <tr>
                        <th>"Agent"</th><th>"State"</th><th>"Messages"</th><th>"LLM calls"</th>
                        <th>"Tokens"</th><th>"Tool calls"</th><th>"Faults"</th><th>"Restarts"</th>
                    </tr>
                </thead>
                <tbody>
                    {move || run.get().agents.into_iter().map(|a| view! {
                        <tr data-agent=a.name.clone() data-state=state_name(a.state)>
                            <td>{a.name.clone()}</td><td class="agent-state">{state_name(a.state)}</td>
                            <td>{a.messages}</td><td>{a.llm_calls}</td><td>{a.tokens}</td>
                            <td>{a.tool_calls}</td><td>{a.faults}</td><td>{a.restarts}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
            <ol id="workflow-timeline" aria-live="polite">
                {move || run.get().timeline.iter().map(|event| {
                    let (kind, step, text) = describe(event);
                    view! {
                        <li data-event=kind>
                            <span class="step">{step.map(|s| format!("step {s}")).unwrap_or_default()}</span>
                            <span class="what">{text}</span>
                        </li>
                    }
                }).collect_view()}
            </ol>
        </section>
    }
}
