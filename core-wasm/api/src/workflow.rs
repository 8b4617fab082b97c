//! Workflows in TOML: the agents (role, system prompt, sampling), the task, and the topology
//! that says who speaks when. Every error names the line and the field.
//!
//! ```toml
//! [workflow]
//! name = "debate"
//! seed = 7
//! task = "Is a hot dog a sandwich?"
//!
//! [topology]
//! kind = "round_robin"        # sequential | round_robin | planner_workers_critic | map_reduce
//! members = ["pro", "con"]
//! rounds = 2
//! judge = "judge"             # optional: speaks last, after every round
//!
//! [[agents]]
//! name = "pro"
//! system = "You argue that a hot dog is a sandwich."
//! temperature = 0.7
//! max_tokens = 48
//! ```

use std::collections::HashSet;
use std::ops::Range;

use serde::Deserialize;
use thiserror::Error;
use toml::Spanned;

#[derive(Debug, Error, PartialEq)]
pub enum WorkflowError {
    #[error("workflow line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("workflow line {line}, field `{field}`: {message}")]
    Invalid { line: usize, field: String, message: String },
}

/// A validated workflow.
#[derive(Clone, Debug, PartialEq)]
pub struct Workflow {
    pub name: String,
    pub seed: u64,
    /// What the agents work on: the first message of the run, from the user.
    pub task: String,
    pub agents: Vec<AgentSpec>,
    pub topology: Topology,
}

/// One agent: the built-in LLM agent, or a custom wasm module when `module` is set.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentSpec {
    pub name: String,
    /// A short description of what it does, shown to the other agents.
    pub role: String,
    pub system: String,
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub max_tokens: usize,
    /// Path of a custom agent module (relative to the workflow file).
    pub module: Option<String>,
    /// Free text handed to the module with every turn.
    pub config: String,
    pub supervision: Supervision,
    /// Instructions per turn and memory of a module agent.
    pub limits: ModuleLimits,
    /// Wall-clock time a turn may take outside LLM and tool calls.
    pub time_budget_ms: u64,
    /// Built-in tools an LLM agent may call from its replies ([`BUILTIN_TOOLS`]).
    pub tools: Vec<String>,
    /// `tool_choice = "required"`: each turn's first reply is a tool call, decoded under the
    /// tools' argument schemas (constrained decoding); otherwise the model decides.
    pub tool_choice_required: bool,
}

impl AgentSpec {
    /// An LLM agent with default sampling, supervision and budgets.
    pub fn new(name: impl Into<String>, system: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            role: String::new(),
            system: system.into(),
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            max_tokens: 96,
            module: None,
            config: String::new(),
            supervision: Supervision::default(),
            limits: DEFAULT_LIMITS,
            time_budget_ms: DEFAULT_TIME_BUDGET_MS,
            tools: Vec::new(),
            tool_choice_required: false,
        }
    }
}

/// What the supervisor does when the agent faults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Supervision {
    pub on_fault: OnFault,
    /// Restarts allowed over the run before the agent is given up.
    pub max_restarts: u32,
    /// The wait before the first restart; it doubles with each restart.
    pub backoff_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFault {
    /// Restart the agent (a fresh instance) and retry the turn.
    Restart,
    /// Drop the agent; the others go on without it.
    GiveUp,
    /// Stop the whole workflow with an error.
    Escalate,
}

impl Default for Supervision {
    fn default() -> Self {
        Self { on_fault: OnFault::Restart, max_restarts: 3, backoff_ms: 20 }
    }
}

/// A module's budget.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModuleLimits {
    /// Instructions per turn.
    pub fuel: u64,
    /// Bytes of linear memory.
    pub memory_bytes: usize,
    /// Wall-clock milliseconds it may compute between two waits on the hub (an LLM reply, a
    /// tool's output): checked here, between slices of its instructions, so a module past it
    /// stops by itself wherever it runs (a Web Worker sharing memory cannot be terminated).
    pub time_budget_ms: u64,
}

/// The built-in tools, as agents call them (the agents runtime implements them).
pub const BUILTIN_TOOLS: [&str; 3] = ["calculator", "json_extract", "scratchpad"];

/// Default budgets of a module agent.
pub const DEFAULT_LIMITS: ModuleLimits =
    ModuleLimits { fuel: 200_000_000, memory_bytes: 64 << 20, time_budget_ms: DEFAULT_TIME_BUDGET_MS };
pub const DEFAULT_TIME_BUDGET_MS: u64 = 10_000;

/// Who speaks when; agents are indices into [`Workflow::agents`].
#[derive(Clone, Debug, PartialEq)]
pub enum Topology {
    /// Each agent in turn, each given the previous one's output.
    Sequential { order: Vec<usize> },
    /// The members take turns for `rounds` rounds, each seeing the whole conversation; the
    /// judge, if any, speaks last.
    RoundRobin { members: Vec<usize>, rounds: usize, judge: Option<usize> },
    /// The planner writes numbered steps; each step goes to a worker (in turn); the critic
    /// reviews the workers' results.
    PlannerWorkersCritic { planner: usize, workers: Vec<usize>, critic: usize, max_steps: usize },
    /// The mapper handles each chunk of the input on its own; the reducer combines the results.
    MapReduce { mapper: usize, reducer: usize, chunks: Vec<String> },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    workflow: Spanned<Header>,
    topology: Spanned<TopologyFile>,
    agents: Spanned<Vec<Spanned<AgentFile>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    name: Spanned<String>,
    #[serde(default)]
    seed: u64,
    task: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopologyFile {
    kind: Spanned<String>,
    order: Option<Vec<Spanned<String>>>,
    members: Option<Vec<Spanned<String>>>,
    rounds: Option<Spanned<i64>>,
    judge: Option<Spanned<String>>,
    planner: Option<Spanned<String>>,
    workers: Option<Vec<Spanned<String>>>,
    critic: Option<Spanned<String>>,
    max_steps: Option<Spanned<i64>>,
    mapper: Option<Spanned<String>>,
    reducer: Option<Spanned<String>>,
    /// map_reduce: the text to split (defaults to the task).
    input: Option<Spanned<String>>,
    chunk_words: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFile {
    name: Spanned<String>,
    #[serde(default)]
    role: String,
    system: Option<Spanned<String>>,
    temperature: Option<Spanned<f64>>,
    top_k: Option<Spanned<i64>>,
    top_p: Option<Spanned<f64>>,
    max_tokens: Option<Spanned<i64>>,
    module: Option<Spanned<String>>,
    #[serde(default)]
    config: String,
    on_fault: Option<Spanned<String>>,
    max_restarts: Option<Spanned<i64>>,
    backoff_ms: Option<Spanned<i64>>,
    fuel: Option<Spanned<i64>>,
    memory_mb: Option<Spanned<i64>>,
    time_budget_ms: Option<Spanned<i64>>,
    #[serde(default)]
    tools: Vec<Spanned<String>>,
    tool_choice: Option<Spanned<String>>,
}

/// Most tokens one turn may ask for, and most turns a topology may plan: a workflow file is
/// user input and must not size allocations or runs without bound.
pub const MAX_TURN_TOKENS: i64 = 4096;
pub const MAX_ROUNDS: i64 = 64;

/// Line (1-based) of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

struct Checker<'a> {
    text: &'a str,
}

impl Checker<'_> {
    fn err(&self, span: Range<usize>, field: &str, message: impl Into<String>) -> WorkflowError {
        WorkflowError::Invalid { line: line_of(self.text, span.start), field: field.into(), message: message.into() }
    }

    fn required<'v, T>(
        &self,
        value: &'v Option<T>,
        at: Range<usize>,
        field: &str,
        kind: &str,
    ) -> Result<&'v T, WorkflowError> {
        value.as_ref().ok_or_else(|| self.err(at, field, format!("a {kind} topology needs `{field}`")))
    }

    fn count(&self, value: &Spanned<i64>, field: &str, max: i64) -> Result<usize, WorkflowError> {
        let v = *value.get_ref();
        if !(1..=max).contains(&v) {
            return Err(self.err(value.span(), field, format!("{v} is not between 1 and {max}")));
        }
        Ok(v as usize)
    }
}

impl Workflow {
    pub fn from_toml(text: &str) -> Result<Self, WorkflowError> {
        let file: File = toml::from_str(text).map_err(|e| WorkflowError::Syntax {
            line: e.span().map_or(1, |s| line_of(text, s.start)),
            message: e.message().trim().to_string(),
        })?;
        let check = Checker { text };
        if file.agents.get_ref().is_empty() {
            return Err(check.err(file.agents.span(), "agents", "a workflow needs at least one agent"));
        }
        let mut names = HashSet::new();
        let agents =
            file.agents.get_ref().iter().map(|agent| check.agent(agent, &mut names)).collect::<Result<Vec<_>, _>>()?;
        let topology = check.topology(&file, &agents)?;
        let header = file.workflow.get_ref();
        let task = header.task.get_ref().trim().to_string();
        if task.is_empty() {
            return Err(check.err(header.task.span(), "workflow.task", "the task is empty"));
        }
        Ok(Workflow { name: header.name.get_ref().clone(), seed: header.seed, task, agents, topology })
    }
}

impl Checker<'_> {
    /// One `[[agents]]` entry, checked; its name must not be in `names` yet (it is added).
    fn agent(&self, agent: &Spanned<AgentFile>, names: &mut HashSet<String>) -> Result<AgentSpec, WorkflowError> {
        let a = agent.get_ref();
        let name = a.name.get_ref().trim().to_string();
        if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-') {
            return Err(self.err(
                a.name.span(),
                "agents.name",
                format!("{name:?} is not a name (1-64 letters, digits, _ or -)"),
            ));
        }
        if !names.insert(name.clone()) {
            return Err(self.err(a.name.span(), "agents.name", format!("two agents are named {name:?}")));
        }
        let temperature = a.temperature.as_ref().map_or(0.0, |t| *t.get_ref());
        if !(0.0..=2.0).contains(&temperature) {
            let span = a.temperature.as_ref().map_or(agent.span(), |t| t.span());
            return Err(self.err(span, "agents.temperature", format!("{temperature} is not between 0 and 2")));
        }
        let top_p = a.top_p.as_ref().map_or(1.0, |t| *t.get_ref());
        if !(top_p > 0.0 && top_p <= 1.0) {
            let span = a.top_p.as_ref().map_or(agent.span(), |t| t.span());
            return Err(self.err(span, "agents.top_p", format!("{top_p} is not in (0, 1]")));
        }
        let top_k = match &a.top_k {
            Some(k) if *k.get_ref() < 0 => {
                return Err(self.err(k.span(), "agents.top_k", format!("{} is negative", k.get_ref())));
            }
            Some(k) => *k.get_ref() as usize,
            None => 0,
        };
        let max_tokens = match &a.max_tokens {
            Some(m) => self.count(m, "agents.max_tokens", MAX_TURN_TOKENS)?,
            None => 96,
        };
        let module = a.module.as_ref().map(|m| m.get_ref().trim().to_string());
        if let Some(m) = &a.module
            && m.get_ref().trim().is_empty()
        {
            return Err(self.err(m.span(), "agents.module", "the module path is empty"));
        }
        let system = match (&a.system, &module) {
            (Some(s), _) => s.get_ref().clone(),
            (None, Some(_)) => String::new(),
            (None, None) => {
                return Err(self.err(agent.span(), "agents.system", "an LLM agent needs a system prompt"));
            }
        };
        let (supervision, limits, time_budget_ms) = self.budgets(agent)?;
        let (tools, tool_choice_required) = self.tools(a)?;
        Ok(AgentSpec {
            name,
            role: a.role.clone(),
            system,
            temperature: temperature as f32,
            top_k,
            top_p: top_p as f32,
            max_tokens,
            module,
            config: a.config.clone(),
            supervision,
            limits,
            time_budget_ms,
            tools,
            tool_choice_required,
        })
    }

    /// An agent's supervision policy and budgets: (supervision, module limits, time budget).
    fn budgets(&self, agent: &Spanned<AgentFile>) -> Result<(Supervision, ModuleLimits, u64), WorkflowError> {
        let a = agent.get_ref();
        let on_fault = match &a.on_fault {
            None => OnFault::Restart,
            Some(p) => match p.get_ref().as_str() {
                "restart" => OnFault::Restart,
                "give_up" => OnFault::GiveUp,
                "escalate" => OnFault::Escalate,
                other => {
                    return Err(self.err(
                        p.span(),
                        "agents.on_fault",
                        format!("unknown policy {other:?} (restart, give_up, escalate)"),
                    ));
                }
            },
        };
        let number = |v: &Option<Spanned<i64>>, field: &str, max: i64, default: u64| match v {
            Some(v) => self.count(v, field, max).map(|n| n as u64),
            None => Ok(default),
        };
        let supervision = Supervision {
            on_fault,
            max_restarts: match &a.max_restarts {
                Some(r) if *r.get_ref() == 0 => 0,
                r => number(r, "agents.max_restarts", 100, 3)? as u32,
            },
            backoff_ms: number(&a.backoff_ms, "agents.backoff_ms", 60_000, 20)?,
        };
        let time_budget_ms = number(&a.time_budget_ms, "agents.time_budget_ms", 3_600_000, DEFAULT_TIME_BUDGET_MS)?;
        let limits = ModuleLimits {
            time_budget_ms,
            fuel: number(&a.fuel, "agents.fuel", 1 << 40, DEFAULT_LIMITS.fuel)?,
            memory_bytes: number(&a.memory_mb, "agents.memory_mb", 4096, (DEFAULT_LIMITS.memory_bytes >> 20) as u64)?
                as usize
                * (1 << 20),
        };
        Ok((supervision, limits, time_budget_ms))
    }

    /// An agent's built-in tools, and whether each turn's first reply must call one.
    fn tools(&self, a: &AgentFile) -> Result<(Vec<String>, bool), WorkflowError> {
        let mut tools = Vec::new();
        for tool in &a.tools {
            let t = tool.get_ref();
            if !BUILTIN_TOOLS.contains(&t.as_str()) {
                return Err(self.err(
                    tool.span(),
                    "agents.tools",
                    format!("no tool named {t:?} (tools: {})", BUILTIN_TOOLS.join(", ")),
                ));
            }
            tools.push(t.clone());
        }
        let tool_choice_required = match &a.tool_choice {
            None => false,
            Some(choice) => match choice.get_ref().as_str() {
                "auto" => false,
                "required" if a.module.is_none() && !tools.is_empty() => true,
                "required" => {
                    let why = "tool_choice = \"required\" needs an LLM agent with tools";
                    return Err(self.err(choice.span(), "agents.tool_choice", why.to_string()));
                }
                other => {
                    let why = format!("tool_choice is \"auto\" or \"required\", not {other:?}");
                    return Err(self.err(choice.span(), "agents.tool_choice", why));
                }
            },
        };
        Ok((tools, tool_choice_required))
    }

    /// The `[topology]` table, its agents named by index into `agents`.
    fn topology(&self, file: &File, agents: &[AgentSpec]) -> Result<Topology, WorkflowError> {
        let t = file.topology.get_ref();
        let at = file.topology.span();
        let agent = |name: &Spanned<String>, field: &str| -> Result<usize, WorkflowError> {
            agents.iter().position(|a| a.name == *name.get_ref()).ok_or_else(|| {
                let known: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
                self.err(
                    name.span(),
                    field,
                    format!("no agent is named {:?} (agents: {})", name.get_ref(), known.join(", ")),
                )
            })
        };
        let list = |names: &[Spanned<String>], field: &str| -> Result<Vec<usize>, WorkflowError> {
            if names.is_empty() {
                return Err(self.err(at.clone(), field, "the list is empty"));
            }
            names.iter().map(|n| agent(n, field)).collect()
        };
        let kind = t.kind.get_ref().as_str();
        Ok(match kind {
            "sequential" => Topology::Sequential {
                order: list(self.required(&t.order, at.clone(), "topology.order", kind)?, "topology.order")?,
            },
            "round_robin" => Topology::RoundRobin {
                members: list(self.required(&t.members, at.clone(), "topology.members", kind)?, "topology.members")?,
                rounds: match &t.rounds {
                    Some(r) => self.count(r, "topology.rounds", MAX_ROUNDS)?,
                    None => 1,
                },
                judge: t.judge.as_ref().map(|j| agent(j, "topology.judge")).transpose()?,
            },
            "planner_workers_critic" => Topology::PlannerWorkersCritic {
                planner: agent(self.required(&t.planner, at.clone(), "topology.planner", kind)?, "topology.planner")?,
                workers: list(self.required(&t.workers, at.clone(), "topology.workers", kind)?, "topology.workers")?,
                critic: agent(self.required(&t.critic, at.clone(), "topology.critic", kind)?, "topology.critic")?,
                max_steps: match &t.max_steps {
                    Some(m) => self.count(m, "topology.max_steps", MAX_ROUNDS)?,
                    None => 3,
                },
            },
            "map_reduce" => {
                let chunk_words = match &t.chunk_words {
                    Some(c) => self.count(c, "topology.chunk_words", 100_000)?,
                    None => 120,
                };
                let input = t.input.as_ref().map_or(file.workflow.get_ref().task.get_ref(), |i| i.get_ref());
                let words: Vec<&str> = input.split_whitespace().collect();
                if words.is_empty() {
                    let span = t.input.as_ref().map_or(at.clone(), |i| i.span());
                    return Err(self.err(span, "topology.input", "there is no text to map over"));
                }
                let chunks: Vec<String> = words.chunks(chunk_words).map(|c| c.join(" ")).collect();
                if chunks.len() as i64 > MAX_ROUNDS {
                    let span = t.chunk_words.as_ref().map_or(at.clone(), |c| c.span());
                    return Err(self.err(
                        span,
                        "topology.chunk_words",
                        format!("the input makes {} chunks, more than {MAX_ROUNDS}", chunks.len()),
                    ));
                }
                Topology::MapReduce {
                    mapper: agent(self.required(&t.mapper, at.clone(), "topology.mapper", kind)?, "topology.mapper")?,
                    reducer: agent(
                        self.required(&t.reducer, at.clone(), "topology.reducer", kind)?,
                        "topology.reducer",
                    )?,
                    chunks,
                }
            }
            other => {
                return Err(self.err(
                    t.kind.span(),
                    "topology.kind",
                    format!("unknown topology {other:?} (sequential, round_robin, planner_workers_critic, map_reduce)"),
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBATE: &str = r#"
[workflow]
name = "debate"
seed = 7
task = "Is a hot dog a sandwich?"

[topology]
kind = "round_robin"
members = ["pro", "con"]
rounds = 2
judge = "judge"

[[agents]]
name = "pro"
system = "Argue yes."
temperature = 0.7

[[agents]]
name = "con"
system = "Argue no."

[[agents]]
name = "judge"
system = "Decide."
max_tokens = 32
"#;

    #[test]
    fn a_debate_parses() {
        let w = Workflow::from_toml(DEBATE).unwrap();
        assert_eq!(w.seed, 7);
        assert_eq!(w.agents.len(), 3);
        assert_eq!(w.agents[0].temperature, 0.7);
        assert_eq!(w.agents[2].max_tokens, 32);
        assert_eq!(w.topology, Topology::RoundRobin { members: vec![0, 1], rounds: 2, judge: Some(2) });
    }

    fn error_of(text: &str) -> WorkflowError {
        Workflow::from_toml(text).unwrap_err()
    }

    #[test]
    fn errors_name_the_line_and_field() {
        let e = error_of(&DEBATE.replace("judge = \"judge\"", "judge = \"referee\""));
        assert_eq!(
            e,
            WorkflowError::Invalid {
                line: 11,
                field: "topology.judge".into(),
                message: "no agent is named \"referee\" (agents: pro, con, judge)".into()
            },
            "{e}"
        );
        let e = error_of(&DEBATE.replace("rounds = 2", "rounds = 0"));
        assert!(matches!(&e, WorkflowError::Invalid { line: 10, field, .. } if field == "topology.rounds"), "{e}");
        let e = error_of(&DEBATE.replace("temperature = 0.7", "temperature = 9"));
        assert!(e.to_string().contains("line 16, field `agents.temperature`: 9 is not between 0 and 2"), "{e}");
        let e = error_of(&DEBATE.replace("round_robin", "star"));
        assert!(e.to_string().contains("line 8, field `topology.kind`: unknown topology \"star\""), "{e}");
        let e = error_of(&DEBATE.replace("name = \"con\"", "name = \"pro\""));
        assert!(e.to_string().contains("line 19, field `agents.name`: two agents are named \"pro\""), "{e}");
        let e = error_of(&DEBATE.replace("max_tokens = 32", "tools = [\"calculator\", \"shell\"]"));
        assert!(e.to_string().contains("line 25, field `agents.tools`: no tool named \"shell\""), "{e}");
        let e = error_of(&DEBATE.replace("max_tokens = 32", "tool_choice = \"required\""));
        assert!(e.to_string().contains("field `agents.tool_choice`: tool_choice = \"required\" needs"), "{e}");
        let e = error_of(&DEBATE.replace("max_tokens = 32", "tools = [\"calculator\"]\ntool_choice = \"always\""));
        assert!(e.to_string().contains("line 26, field `agents.tool_choice`: tool_choice is"), "{e}");
        let w = Workflow::from_toml(
            &DEBATE.replace("max_tokens = 32", "tools = [\"calculator\"]\ntool_choice = \"required\""),
        )
        .unwrap();
        assert!(w.agents[2].tool_choice_required);
        let e = error_of(&DEBATE.replace("max_tokens = 32", "on_fault = \"retry\""));
        assert!(e.to_string().contains("field `agents.on_fault`: unknown policy \"retry\""), "{e}");
        let e = error_of(&DEBATE.replace("system = \"Decide.\"", "config = \"x\""));
        assert!(e.to_string().contains("field `agents.system`: an LLM agent needs a system prompt"), "{e}");
        let e = error_of(&DEBATE.replace("max_tokens = 32", "module = \"j.wasm\"\nmemory_mb = 0"));
        assert!(e.to_string().contains("field `agents.memory_mb`: 0 is not between 1 and 4096"), "{e}");
        let e = error_of(&DEBATE.replace("members = [\"pro\", \"con\"]", ""));
        assert!(e.to_string().contains("field `topology.members`: a round_robin topology needs"), "{e}");
    }

    #[test]
    fn syntax_errors_and_unknown_fields_name_the_line() {
        let e = error_of(&DEBATE.replace("seed = 7", "seed = "));
        assert!(matches!(e, WorkflowError::Syntax { line: 4, .. }), "{e}");
        let e = error_of(&DEBATE.replace("temperature = 0.7", "temprature = 0.7"));
        assert!(matches!(&e, WorkflowError::Syntax { line: 16, message } if message.contains("temprature")), "{e}");
        let e = error_of("[workflow]\nname = \"x\"\ntask = \"t\"\n");
        assert!(e.to_string().contains("missing field `topology`"), "{e}");
    }

    #[test]
    fn map_reduce_splits_its_input_into_chunks() {
        let text = r#"
[workflow]
name = "summary"
task = "Summarise."
[topology]
kind = "map_reduce"
mapper = "m"
reducer = "r"
input = "one two three four five"
chunk_words = 2
[[agents]]
name = "m"
system = "s"
[[agents]]
name = "r"
system = "s"
"#;
        let w = Workflow::from_toml(text).unwrap();
        assert_eq!(
            w.topology,
            Topology::MapReduce {
                mapper: 0,
                reducer: 1,
                chunks: vec!["one two".into(), "three four".into(), "five".into()]
            }
        );
        let e = error_of(&text.replace("chunk_words = 2", "chunk_words = -1"));
        assert!(e.to_string().contains("field `topology.chunk_words`: -1 is not between"), "{e}");
    }
}
