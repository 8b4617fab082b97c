//! `hearth bench --load`: many agents for a long time on the default model, with faults
//! injected, natively. One workflow — every agent in turn, three in four of them LLM agents,
//! every fourth the faulty test module trapping, panicking, looping or hoarding memory at
//! random — is run again and again, each run asking something new, until the time is up.
//! It reports messages, tokens, faults, restarts, that every turn ended in a message or in its
//! agent's policy giving up (so nothing committed went missing), and the process's resident
//! memory after each run, which must stay flat.

use hearth_core::mapped_file::MappedFile;
use std::path::Path;
use std::time::{Duration, Instant};

use hearth_agents::{RunOptions, TranscriptEvent, Workflow};
use hearth_core::engine::{Engine, native_clock};

use crate::bench::BenchError;

/// What the load run saw.
#[derive(Debug, Default)]
pub struct LoadFigures {
    pub runs: usize,
    pub turns: usize,
    pub messages: usize,
    pub completion_tokens: usize,
    pub faults: usize,
    pub restarts: usize,
    pub gave_up: usize,
    pub skipped: usize,
    pub seconds: f64,
    /// Resident memory after each run, in bytes.
    pub resident: Vec<u64>,
    /// Runs whose turns did not each end in a message, a give-up or a skip.
    pub lost: Vec<String>,
}

/// The workflow: `agents` agents in turn, every fourth a module faulting at random.
fn workflow_toml(agents: usize, round: usize, faulty: &Path) -> String {
    let names: Vec<String> = (0..agents).map(|i| format!("agent{i:02}")).collect();
    let mut toml = format!(
        "[workflow]\nname = \"load\"\nseed = {round}\n\
         task = \"Round {round}: name something useful to bring on a walk, and say why in one sentence.\"\n\
         [topology]\nkind = \"sequential\"\norder = {names:?}\n"
    );
    for (i, name) in names.iter().enumerate() {
        if i % 4 == 3 {
            toml += &format!(
                "[[agents]]\nname = \"{name}\"\nmodule = \"{}\"\nconfig = \"random\"\nfuel = 2000000\n\
                 memory_mb = 8\nmax_restarts = 3\nbackoff_ms = 1\n",
                faulty.display()
            );
        } else {
            toml += &format!(
                "[[agents]]\nname = \"{name}\"\nsystem = \"You answer in one short sentence.\"\n\
                 temperature = 0.8\nmax_tokens = 24\n"
            );
        }
    }
    toml
}

/// This process's resident memory, from /proc (0 where there is none).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|pages| pages.parse::<u64>().ok()))
        .map_or(0, |pages| pages * 4096)
}

pub fn run(model: &Path, faulty: &Path, agents: usize, limit: Duration) -> Result<LoadFigures, BenchError> {
    let file = MappedFile::open(model).map_err(|e| BenchError::Open(model.display().to_string(), e))?;
    let mut engine = Engine::load(&file, 2048, native_clock)?;
    let mut figures = LoadFigures::default();
    let start = Instant::now();
    while start.elapsed() < limit {
        let round = figures.runs;
        let workflow = Workflow::from_toml(&workflow_toml(agents, round, faulty))
            .map_err(|e| BenchError::Load(format!("the load workflow: {e}")))?;
        let programs =
            hearth_agents::programs(&workflow, Path::new(".")).map_err(|e| BenchError::Load(e.to_string()))?;
        let (mut messages, mut gave_up, mut skipped) = (0, 0, 0);
        let summary =
            hearth_agents::run(&workflow, programs, &mut engine, RunOptions::default(), |event| match event {
                TranscriptEvent::Message { .. } => messages += 1,
                TranscriptEvent::GaveUp { .. } => gave_up += 1,
                TranscriptEvent::Skipped { .. } => skipped += 1,
                _ => {}
            })
            .map_err(|e| BenchError::Load(format!("run {round}: {e}")))?;
        // Sequential: one turn per agent, each ending in its message, its policy giving up,
        // or (after giving up earlier) a skip.
        if messages + gave_up + skipped != agents || messages != summary.messages {
            figures.lost.push(format!(
                "run {round}: {messages} messages (summary {}), {gave_up} gave up, {skipped} skipped, {agents} turns",
                summary.messages
            ));
        }
        figures.runs += 1;
        figures.turns += agents;
        figures.messages += messages;
        figures.completion_tokens += summary.completion_tokens;
        figures.faults += summary.faults;
        figures.restarts += summary.restarts;
        figures.gave_up += gave_up;
        figures.skipped += skipped;
        figures.resident.push(resident_bytes());
        eprintln!(
            "load: run {round}: {messages} messages, {} tokens, {} faults, {} restarts; {:.0} MiB resident",
            summary.completion_tokens,
            summary.faults,
            summary.restarts,
            resident_bytes() as f64 / (1 << 20) as f64
        );
    }
    figures.seconds = start.elapsed().as_secs_f64();
    Ok(figures)
}
