//! Agents on the bus, end to end through `hearth run`: custom wasm agents beside LLM agents on
//! the default model; the same workflow under random delays gives one transcript; agents that
//! trap, panic, loop forever or allocate without bound are handled by their policies while the
//! others finish; a module importing beyond the ABI is refused before the run.

use std::path::Path;
use std::process::{Command, Output};

use hearth_tests::{FAULTY_AGENTS, agent_module, hearth_binary};
use serde_json::Value;

fn run(workflow: &Path, args: &[&str]) -> Output {
    Command::new(hearth_binary())
        .args(["run", "--backend", "cpu", "--workflow"])
        .arg(workflow)
        .args(args)
        .output()
        .expect("run hearth")
}

fn events(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn ok_events(out: &Output) -> Vec<Value> {
    assert!(out.status.success(), "hearth run failed: {}", String::from_utf8_lossy(&out.stderr));
    events(out)
}

/// A workflow file in a fresh directory; `{faulty}` stands for the faulty agent's module path.
fn workflow(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workflow.toml");
    let module = agent_module("faulty_agent");
    std::fs::write(&path, text.replace("{faulty}", &module.display().to_string())).unwrap();
    (dir, path)
}

fn of<'a>(events: &'a [Value], kind: &str, agent: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind && (e["agent"] == agent || e["from"] == agent)).collect()
}

#[test]
fn custom_agents_work_beside_llm_agents() {
    agent_module("word_stats");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/custom-agents.toml");
    let events = ok_events(&run(&example, &[]));
    let messages: Vec<&Value> = events.iter().filter(|e| e["event"] == "message").collect();
    let from: Vec<&str> = messages.iter().map(|m| m["from"].as_str().unwrap()).collect();
    assert_eq!(from, ["writer", "stats", "keywords", "editor"]);
    // word-stats counted the writer's words, and the calculator agrees with its count.
    let words = messages[0]["content"].as_str().unwrap().split_whitespace().count();
    let stats = messages[1]["content"].as_str().unwrap();
    assert!(stats.starts_with(&format!("{words} words in ")), "{stats}");
    let calc =
        of(&events, "tool_call", "stats").into_iter().find(|t| t["tool"] == "calculator").expect("a calculation");
    assert!(calc["args"].as_str().unwrap().starts_with(&format!("{words} / ")), "{calc}");
    assert!(stats.contains(&format!("({} words per sentence)", calc["output"].as_str().unwrap())), "{stats}");
    // keywords asked the LLM and used json_extract on its answer.
    assert_eq!(of(&events, "llm_call", "keywords").len(), 1);
    assert_eq!(of(&events, "tool_call", "keywords")[0]["tool"], "json_extract");
    assert!(messages[2]["content"].as_str().unwrap().starts_with("Keywords: "));
}

const MIXED: &str = r#"
[workflow]
name = "mixed"
seed = 21
task = "Name a fruit and say one thing about it."
[topology]
kind = "planner_workers_critic"
planner = "planner"
workers = ["worker", "echo", "flaky"]
critic = "critic"
max_steps = 3
[[agents]]
name = "planner"
system = "Write a plan of three short numbered steps."
temperature = 0.8
max_tokens = 40
[[agents]]
name = "worker"
system = "Do the step you are given, in one sentence."
temperature = 0.9
top_k = 40
max_tokens = 24
[[agents]]
name = "echo"
module = "{faulty}"
config = "echo"
[[agents]]
name = "flaky"
module = "{faulty}"
config = "trap-first"
backoff_ms = 1
[[agents]]
name = "critic"
system = "Judge the work in one sentence."
temperature = 0.7
max_tokens = 24
"#;

#[test]
fn random_delays_never_change_the_transcript() {
    let (_dir, path) = workflow(MIXED);
    let reference = run(&path, &[]);
    let events = ok_events(&reference);
    assert!(!of(&events, "restart", "flaky").is_empty(), "the flaky agent's restart is part of the run");
    for i in 0..10 {
        let jittered = run(&path, &["--jitter-ms", "4"]);
        ok_events(&jittered);
        assert!(jittered.stdout == reference.stdout, "run {i} with random delays differs");
    }
    // The message-passing bus gives the same transcript but for the line naming the transport.
    let messages = run(&path, &["--bus", "messages", "--jitter-ms", "4"]);
    let lines =
        |o: &Output| String::from_utf8(o.stdout.clone()).unwrap().lines().skip(1).map(String::from).collect::<Vec<_>>();
    assert_eq!(ok_events(&messages)[0]["transport"], "message_passing");
    assert_eq!(lines(&messages), lines(&reference));
    let other_seed = run(&path, &["--seed", "22"]);
    assert_ne!(lines(&other_seed), lines(&reference), "the seed drives the run");
}

#[test]
fn faulty_agents_are_handled_by_their_policies_and_the_others_finish() {
    let (_dir, path) = workflow(FAULTY_AGENTS);
    let events = ok_events(&run(&path, &[]));
    let kinds =
        |agent: &str| of(&events, "fault", agent).iter().map(|f| f["kind"].as_str().unwrap()).collect::<Vec<_>>();
    // give_up: one fault, then its later turns are skipped.
    assert_eq!(kinds("trapper"), ["trap"]);
    assert_eq!(of(&events, "gave_up", "trapper").len(), 1);
    assert_eq!(of(&events, "skipped", "trapper").len(), 1);
    // An endless loop runs out of instructions; restarted once, then given up.
    assert_eq!(kinds("spinner"), ["time_budget", "time_budget"]);
    assert!(of(&events, "fault", "spinner")[0]["detail"].as_str().unwrap().contains("5000000 instructions"));
    assert_eq!(of(&events, "restart", "spinner").len(), 1);
    // With fuel to spare it is the wall clock that stops it.
    assert_eq!(kinds("stuck"), ["time_budget"]);
    assert!(of(&events, "fault", "stuck")[0]["detail"].as_str().unwrap().contains("time budget of 300 ms"));
    // Unbounded allocation hits the memory limit; two restarts with doubling backoff.
    assert_eq!(kinds("hog"), ["memory"; 3]);
    let backoffs: Vec<u64> = of(&events, "restart", "hog").iter().map(|r| r["backoff_ms"].as_u64().unwrap()).collect();
    assert_eq!(backoffs, [1, 2]);
    assert_eq!(kinds("panicker"), ["panic"]);
    assert!(of(&events, "fault", "panicker")[0]["detail"].as_str().unwrap().contains("deliberately, on turn 0"));
    // A write outside its own memory traps inside its instance; restarted once, then given up.
    assert_eq!(kinds("escaper"), ["trap", "trap"]);
    assert!(of(&events, "fault", "escaper")[0]["detail"].as_str().unwrap().contains("out of bounds"));
    assert_eq!(of(&events, "restart", "escaper").len(), 1);
    assert_eq!(of(&events, "skipped", "escaper").len(), 1);
    // A restart recovers the flaky agent's turns; the good agent never noticed anything.
    assert_eq!(kinds("flaky"), ["trap", "trap"]);
    let said = |agent: &str| {
        of(&events, "message", agent).iter().map(|m| m["content"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(said("flaky").len(), 2);
    assert!(said("flaky").iter().all(|m| m.ends_with("(attempt 1)")), "{:?}", said("flaky"));
    assert_eq!(said("good").len(), 2);
    // Nothing committed is missing: every turn that ended well is in the transcript, in order.
    let last = events.last().unwrap();
    assert_eq!(last["event"], "finished");
    assert_eq!(last["messages"], 4);
    assert_eq!(last["faults"].as_u64().unwrap() as usize, events.iter().filter(|e| e["event"] == "fault").count());
    let steps: Vec<u64> =
        events.iter().filter(|e| e["event"] == "message").map(|m| m["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [0, 5, 8, 13]);
}

#[test]
fn an_escalating_agent_stops_the_workflow_with_an_error() {
    let (_dir, path) = workflow(
        &FAULTY_AGENTS
            .replace("config = \"trap\"\non_fault = \"give_up\"", "config = \"trap\"\non_fault = \"escalate\""),
    );
    let out = run(&path, &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("agent trapper faulted (Trap: wasm `unreachable` instruction executed) and its policy escalates"),
        "{stderr}"
    );
    let events = events(&out);
    assert_eq!(of(&events, "escalated", "trapper").len(), 1);
    assert_eq!(of(&events, "message", "good").len(), 1, "what was committed before is kept");
    assert!(events.iter().all(|e| e["event"] != "finished"));
}

#[test]
fn a_module_beyond_the_abi_is_refused_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("greedy.wasm");
    let wasm = wat::parse_str(r#"(module (import "env" "fetch" (func)) (memory (export "memory") 1))"#).unwrap();
    std::fs::write(&module, wasm).unwrap();
    let (_wdir, path) = workflow(&MIXED.replace("{faulty}", &module.display().to_string()));
    let out = run(&path, &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("agent echo: its module")
            && stderr.contains("imports `env.fetch`, which the agent ABI does not offer"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing ran");
}

/// The three example workflows run on the default model, and each agent with
/// `tool_choice = "required"` makes a tool call on every turn (decoded under the tool's schema,
/// so it always parses and the tool accepts it) before it answers.
#[test]
fn the_examples_use_their_tools_through_constrained_calls() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for (file, agents) in [
        ("debate.toml", &["judge"][..]),
        ("plan-execute-critique.toml", &["worker_a", "worker_b"][..]),
        ("map-reduce-summary.toml", &["editor"][..]),
    ] {
        let events = ok_events(&run(&examples.join(file), &[]));
        let finished = events.last().expect("events");
        assert_eq!((finished["event"].as_str(), finished["faults"].as_u64()), (Some("finished"), Some(0)), "{file}");
        for agent in agents {
            let turns: Vec<u64> = of(&events, "message", agent).iter().filter_map(|m| m["turn"].as_u64()).collect();
            assert!(!turns.is_empty(), "{file}: {agent} answered");
            for turn in turns {
                let first = of(&events, "tool_call", agent).into_iter().find(|c| c["turn"].as_u64() == Some(turn));
                let call = first.unwrap_or_else(|| panic!("{file}: {agent} made no tool call in turn {turn}"));
                assert_eq!(call["ok"], true, "{file}: {agent}'s call failed: {call}");
            }
            for message in of(&events, "message", agent) {
                let content = message["content"].as_str().unwrap_or_default();
                assert!(
                    !content.trim_start().starts_with("{\"name\""),
                    "{file}: {agent} answered with a call: {content}"
                );
            }
        }
        println!(
            "{file}: {:?}",
            events.iter().filter(|e| e["event"] == "tool_call").map(|e| &e["args"]).collect::<Vec<_>>()
        );
    }
}

/// `hearth bench --load`, briefly: its report, and that no turn of any run went missing.
#[test]
fn the_load_run_reports_and_loses_nothing() {
    agent_module("faulty_agent");
    let out = Command::new(hearth_binary())
        .args(["bench", "--load", "--load-agents", "8", "--minutes", "0.1"])
        .output()
        .expect("run hearth bench --load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let row = stdout.lines().find(|l| l.starts_with("| 8 |")).unwrap_or_else(|| panic!("{stdout}"));
    let cells: Vec<&str> = row.split('|').map(str::trim).filter(|c| !c.is_empty()).collect();
    let (runs, turns, messages): (usize, usize, usize) =
        (cells[1].parse().unwrap(), cells[2].parse().unwrap(), cells[3].parse().unwrap());
    assert!(runs >= 1 && turns == runs * 8 && messages <= turns, "{row}");
    assert!(stdout.contains("(nothing lost)"), "{stdout}");
    assert!(stdout.contains("resident memory: after the first run"), "{stdout}");
}
