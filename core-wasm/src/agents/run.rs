//! Runs a workflow on an [`Engine`]: each step's turns in delivery order, each a chat
//! completion with the agent's system prompt and sampling, streamed out as transcript events.

use std::ops::ControlFlow;

use serde::Serialize;

use super::scheduler::{Scheduler, Turn};
use super::workflow::Workflow;
use crate::chat_template::ChatMessage;
use crate::engine::{Engine, EngineError, FinishReason, GenerateParams, Prompt};
use crate::sampler::SamplerConfig;

/// One line of a run's transcript (JSON lines, `event` names the kind).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TranscriptEvent {
    Started {
        workflow: String,
        seed: u64,
        agents: Vec<String>,
        backend: String,
    },
    Message {
        step: u32,
        from: String,
        seq: u32,
        turn: u32,
        content: String,
        prompt_tokens: usize,
        completion_tokens: usize,
        finish_reason: FinishReason,
    },
    Finished {
        steps: u32,
        messages: usize,
        completion_tokens: usize,
    },
}

/// Runs `workflow` to its end, passing each event to `on_event` as it happens; returns them all.
pub async fn run_workflow(
    workflow: &Workflow,
    engine: &mut Engine,
    mut on_event: impl FnMut(&TranscriptEvent),
) -> Result<Vec<TranscriptEvent>, EngineError> {
    let mut events = Vec::new();
    let mut emit = |event: TranscriptEvent, events: &mut Vec<TranscriptEvent>| {
        on_event(&event);
        events.push(event);
    };
    let agents = workflow.agents.iter().map(|a| a.name.clone()).collect();
    let backend = format!("{:?}", engine.backend()).to_lowercase();
    emit(
        TranscriptEvent::Started { workflow: workflow.name.clone(), seed: workflow.seed, agents, backend },
        &mut events,
    );

    let mut scheduler = Scheduler::new(workflow);
    let (mut steps, mut completion_tokens) = (0u32, 0usize);
    while let Some(turns) = scheduler.next_step() {
        let mut replies = Vec::with_capacity(turns.len());
        for turn in &turns {
            let done = take_turn(workflow, engine, turn).await?;
            let content = done.text.trim().to_string();
            completion_tokens += done.completion_tokens;
            emit(
                TranscriptEvent::Message {
                    step: steps,
                    from: workflow.agents[turn.agent].name.clone(),
                    seq: turn.seq,
                    turn: turn.turn,
                    content: content.clone(),
                    prompt_tokens: done.prompt_tokens,
                    completion_tokens: done.completion_tokens,
                    finish_reason: done.finish_reason,
                },
                &mut events,
            );
            replies.push(content);
        }
        scheduler.commit(&turns, replies);
        steps += 1;
    }
    emit(TranscriptEvent::Finished { steps, messages: scheduler.messages().len(), completion_tokens }, &mut events);
    Ok(events)
}

async fn take_turn(
    workflow: &Workflow,
    engine: &mut Engine,
    turn: &Turn,
) -> Result<crate::engine::Completion, EngineError> {
    let agent = &workflow.agents[turn.agent];
    let mut system = agent.system.clone();
    if !agent.role.is_empty() {
        system = format!("You are {}, the {}. {system}", agent.name, agent.role);
    }
    let prompt = Prompt::Chat(vec![ChatMessage::new("system", system), ChatMessage::new("user", turn.request.clone())]);
    let params = GenerateParams {
        max_tokens: agent.max_tokens,
        sampler: SamplerConfig {
            temperature: agent.temperature,
            top_k: agent.top_k,
            top_p: agent.top_p,
            seed: turn.seed,
            ..SamplerConfig::default()
        },
        ..GenerateParams::default()
    };
    engine.generate(&prompt, &params, |_| ControlFlow::Continue(())).await
}
