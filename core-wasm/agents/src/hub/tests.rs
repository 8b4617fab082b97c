use hearth_api::generate::{Completion, FinishReason, GenerateParams, Prompt, Timings};
use hearth_api::llm_service::LlmFuture;
use hearth_api::tool_call::{ToolChoice, ToolMode};

use super::*;

/// An LLM that answers from a script, or with the last line of the prompt.
struct Scripted {
    replies: VecDeque<String>,
    batches: Vec<usize>,
    prompts: Vec<String>,
    /// (tools offered, forced) of each request.
    tools: Vec<(Vec<String>, bool)>,
}

impl LlmService for Scripted {
    fn backend(&self) -> String {
        "scripted".into()
    }

    fn complete<'a>(
        &'a mut self,
        batch: &'a [(Prompt, GenerateParams)],
    ) -> LlmFuture<'a, Vec<Result<Completion, String>>> {
        self.batches.push(batch.len());
        let replies = batch
            .iter()
            .map(|(prompt, params)| {
                // The turn's request is the chat's user message, after the agent's system prompt.
                let Prompt::Chat(messages) = prompt else { panic!("agents ask in chat messages: {prompt:?}") };
                let request = messages.last().map(|m| m.content.clone()).unwrap_or_default();
                let tools = params.tools.iter().map(|t| t.function.name.clone()).collect();
                let forced = params.tool_choice == Some(ToolChoice::Mode(ToolMode::Required));
                self.tools.push((tools, forced));
                let text = self.replies.pop_front().unwrap_or_else(|| request.lines().last().unwrap_or("").into());
                self.prompts.push(request);
                Ok(Completion {
                    text,
                    finish_reason: FinishReason::Stop,
                    prompt_tokens: 1,
                    completion_tokens: 1,
                    tokens: Vec::new(),
                    top_logits: Vec::new(),
                    tool_calls: Vec::new(),
                    timings: Timings::default(),
                })
            })
            .collect();
        Box::pin(std::future::ready(replies))
    }
}

fn run_scripted(toml: &str, replies: &[&str], jitter: Jitter) -> (Vec<TranscriptEvent>, Scripted) {
    let workflow = Workflow::from_toml(toml).unwrap();
    let replies = replies.iter().map(|r| r.to_string()).collect();
    let mut llm = Scripted { replies, batches: vec![], prompts: vec![], tools: vec![] };
    let mut events = Vec::new();
    let programs = programs(&workflow, Path::new(".")).unwrap();
    run(&workflow, programs, &mut llm, RunOptions { transport: Transport::SharedMemory, jitter }, |e| {
        events.push(e.clone())
    })
    .unwrap();
    (events, llm)
}

/// One LLM agent with the calculator.
const CALC: &str = r#"
[workflow]
name = "calc"
task = "What is six times seven?"
[topology]
kind = "sequential"
order = ["calc"]
[[agents]]
name = "calc"
system = "You compute."
tools = ["calculator"]
"#;

#[test]
fn an_llm_agent_calls_a_tool_from_its_reply_and_answers_with_the_result() {
    let (events, llm) = run_scripted(CALC, &["calculator(6 * 7)", "It is 42."], Jitter::default());
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            TranscriptEvent::Started { .. } => "started",
            TranscriptEvent::LlmCall { .. } => "llm_call",
            TranscriptEvent::ToolCall { .. } => "tool_call",
            TranscriptEvent::Message { .. } => "message",
            TranscriptEvent::Finished { .. } => "finished",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["started", "llm_call", "tool_call", "llm_call", "message", "finished"]);
    assert!(
        matches!(&events[2], TranscriptEvent::ToolCall { tool, output, ok: true, .. } if tool == "calculator" && output == "42")
    );
    assert!(matches!(&events[4], TranscriptEvent::Message { content, .. } if content == "It is 42."));
    assert!(
        llm.prompts[1].ends_with("You called calculator(6 * 7). Result: 42\nNow give your answer."),
        "{}",
        llm.prompts[1]
    );
}

#[test]
fn a_required_tool_call_is_forced_on_the_first_request_of_a_turn_only() {
    let toml = format!("{CALC}tool_choice = \"required\"\n");
    let call = r#"{"name": "calculator", "arguments": {"expression": "6 * 7"}}"#;
    let (events, llm) = run_scripted(&toml, &[call, "It is 42."], Jitter::default());
    let calculator = vec!["calculator".to_string()];
    assert_eq!(llm.tools, [(calculator.clone(), true), (calculator, false)]);
    assert!(events.iter().any(|e| matches!(e, TranscriptEvent::ToolCall { output, ok: true, .. } if output == "42")));
}

#[test]
fn programs_must_match_the_agents() {
    let workflow = Workflow::from_toml(
        "[workflow]\nname = \"w\"\ntask = \"t\"\n[topology]\nkind = \"sequential\"\norder = [\"a\"]\n\
         [[agents]]\nname = \"a\"\nsystem = \"s\"\n",
    )
    .unwrap();
    let mut llm = Scripted { replies: VecDeque::new(), batches: vec![], prompts: vec![], tools: vec![] };
    let options = RunOptions { transport: Transport::SharedMemory, jitter: Jitter::default() };
    let err = run(&workflow, Vec::new(), &mut llm, options, |_| {}).unwrap_err();
    assert_eq!(err.to_string(), "0 programs for 1 agents: give one per agent (see `programs`)");
}

#[test]
fn a_step_s_llm_calls_are_one_batch_whatever_the_timing() {
    let toml = r#"
[workflow]
name = "pwc"
task = "Plan a picnic."
[topology]
kind = "planner_workers_critic"
planner = "p"
workers = ["a", "b", "c"]
critic = "k"
[[agents]]
name = "p"
system = "s"
[[agents]]
name = "a"
system = "s"
[[agents]]
name = "b"
system = "s"
[[agents]]
name = "c"
system = "s"
[[agents]]
name = "k"
system = "s"
"#;
    for jitter in [Jitter::default(), Jitter { max_ms: 3 }] {
        let (events, llm) = run_scripted(toml, &["1. bread\n2. cheese\n3. a blanket"], jitter);
        assert_eq!(llm.batches, [1, 3, 1], "the workers' three calls are served together");
        assert!(matches!(events.last(), Some(TranscriptEvent::Finished { messages: 5, .. })));
    }
}
