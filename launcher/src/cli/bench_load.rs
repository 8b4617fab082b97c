//! `hearth bench --load`: many agents, some faulting at random, run again and again on the
//! default model; messages, tokens, faults, restarts and memory.

use std::process::ExitCode;
use std::time::Duration;

use hearth::bench_load;
use hearth_api::catalog::{DEFAULT_MODEL, models_dir};

use super::{fail, say};

pub fn run(agents: usize, minutes: f64) -> ExitCode {
    let faulty = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/agents/faulty_agent.wasm");
    if !faulty.is_file() {
        return fail(format!("{} is missing: build it with scripts/build-agents.sh", faulty.display()));
    }
    if !(minutes > 0.0 && minutes.is_finite()) || agents == 0 {
        return fail("--minutes must be above 0 and --load-agents at least 1");
    }
    let model = models_dir().join(DEFAULT_MODEL.file);
    let modules = agents / 4;
    eprintln!("bench: {agents} agents ({} LLM, {modules} faulting at random) for {minutes} minutes…", agents - modules);
    let f = match bench_load::run(&model, &faulty, agents, Duration::from_secs_f64(minutes * 60.0)) {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let (first, last) = (f.resident.first().copied().unwrap_or(0), f.resident.last().copied().unwrap_or(0));
    let max = f.resident.iter().copied().max().unwrap_or(0);
    say(&format!(
        "| agents | runs | turns | messages | completion tokens | tokens/s | faults | restarts | gave up | seconds |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n\
         | {agents} | {} | {} | {} | {} | {:.1} | {} | {} | {} | {:.0} |",
        f.runs,
        f.turns,
        f.messages,
        f.completion_tokens,
        f.completion_tokens as f64 / f.seconds,
        f.faults,
        f.restarts,
        f.gave_up,
        f.seconds
    ));
    say(&format!(
        "\nruns in which every turn ended in a message, a give-up or a skip: {} of {}{}",
        f.runs - f.lost.len(),
        f.runs,
        if f.lost.is_empty() { " (nothing lost)".to_string() } else { format!("; missing: {:?}", f.lost) }
    ));
    say(&format!(
        "resident memory: after the first run {:.1} MiB, after the last {:.1} MiB, at most {:.1} MiB",
        mib(first),
        mib(last),
        mib(max)
    ));
    if f.lost.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
