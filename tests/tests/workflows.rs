//! `hearth run --workflow`: the three example workflows run on the default model (natively, on
//! the CPU) to a complete transcript; the same workflow and seed give a byte-identical
//! transcript; a bad workflow file is a one-line error naming the line and field, exit code 2.

use std::process::{Command, Output};

use hearth_tests::hearth_binary;
use serde_json::Value;

fn run(args: &[&str]) -> Output {
    Command::new(hearth_binary()).arg("run").args(args).output().expect("run hearth")
}

fn example(name: &str) -> String {
    format!("{}/../examples/{name}.toml", env!("CARGO_MANIFEST_DIR"))
}

fn transcript(out: &Output) -> Vec<Value> {
    assert!(out.status.success(), "hearth run failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[test]
fn examples_run_to_a_full_transcript() {
    // (example, messages per step)
    for (name, steps) in
        [("debate", vec![1, 1, 1, 1, 1]), ("plan-execute-critique", vec![1, 3, 1]), ("map-reduce-summary", vec![3, 1])]
    {
        let events = transcript(&run(&["--workflow", &example(name), "--backend", "cpu"]));
        assert_eq!(events[0]["event"], "started", "{name}");
        let last = events.last().unwrap();
        assert_eq!(last["event"], "finished", "{name}");
        let messages: Vec<&Value> = events.iter().filter(|e| e["event"] == "message").collect();
        assert_eq!(last["messages"].as_u64(), Some(messages.len() as u64), "{name}");
        for m in &messages {
            assert!(!m["content"].as_str().unwrap().is_empty(), "{name}: an empty message {m}");
        }
        // Delivery order: (step, sender's place among the agents, sequence), strictly rising.
        let agents: Vec<&str> = events[0]["agents"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        let key = |m: &Value| {
            let sender = agents.iter().position(|&a| a == m["from"].as_str().unwrap()).expect("a known sender");
            (m["step"].as_u64().unwrap(), sender, m["seq"].as_u64().unwrap())
        };
        assert!(messages.windows(2).all(|p| key(p[0]) < key(p[1])), "{name}: delivery order");
        let mut per_step = vec![0usize; last["steps"].as_u64().unwrap() as usize];
        for m in &messages {
            per_step[m["step"].as_u64().unwrap() as usize] += 1;
        }
        if name != "plan-execute-critique" {
            assert_eq!(per_step, steps, "{name}: messages per step");
        } else {
            // The workers' step has one message per step of the plan (1 to 3).
            assert_eq!((per_step[0], per_step[2]), (1, 1), "{name}: {per_step:?}");
            assert!((1..=3).contains(&per_step[1]), "{name}: {per_step:?}");
        }
    }
}

#[test]
fn the_same_workflow_and_seed_give_the_same_transcript() {
    let debate = example("debate");
    let first = run(&["--workflow", &debate, "--backend", "cpu"]);
    let second = run(&["--workflow", &debate, "--backend", "cpu"]);
    transcript(&first);
    assert_eq!(first.stdout, second.stdout, "byte-identical transcripts");
    let other = run(&["--workflow", &debate, "--backend", "cpu", "--seed", "8"]);
    transcript(&other);
    assert_ne!(first.stdout, other.stdout, "the seed drives the sampling");
}

#[test]
fn a_bad_workflow_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(example("debate")).unwrap().replace("judge = \"judge\"", "judge = \"referee\"");
    let line = 1 + text.lines().position(|l| l == "judge = \"referee\"").expect("the judge line");
    std::fs::write(&path, text).unwrap();
    let out = run(&["--workflow", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let expected = format!("line {line}, field `topology.judge`: no agent is named \"referee\"");
    assert!(err.contains(&expected), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let out = run(&["--workflow", "/nonexistent.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the workflow /nonexistent.toml"));
}
