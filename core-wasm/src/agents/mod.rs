//! Agents and workflows: a workflow file ([`workflow`]), the deterministic scheduler that turns
//! its topology into logical steps of agent turns ([`scheduler`]), and the runner that takes
//! those turns on the engine and writes the transcript ([`run`]).

pub mod run;
pub mod scheduler;
pub mod workflow;

pub use run::{TranscriptEvent, run_workflow};
pub use scheduler::{Message, Scheduler, Turn, turn_seed};
pub use workflow::{AgentSpec, Topology, Workflow, WorkflowError};
