//! Helpers for the end-to-end tests: the real `hearth` binary, ChromeDriver, and headless
//! Chromium with WebGPU on SwiftShader (flags from shared/DESIGN.md).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use hearth::chromium::Process;

pub mod medium;

/// The `hearth` binary built beside this test (scripts/build-app.sh builds it).
pub fn hearth_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/");
    let bin = dir.join("hearth");
    assert!(bin.is_file(), "{} is missing: build it with `cargo build -p hearth` (same profile)", bin.display());
    bin
}

/// A custom agent module built by scripts/build-agents.sh (`word_stats`, `keywords`,
/// `faulty_agent`).
pub fn agent_module(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/agents").join(format!("{name}.wasm"));
    assert!(path.is_file(), "{} is missing: build the agents with scripts/build-agents.sh", path.display());
    path
}

/// Runs `hearth serve --port 0` and returns it with the URL it printed.
pub fn hearth_serve() -> (Process, String) {
    hearth_serve_with(&[], "Hearth is serving on ")
}

/// Runs `hearth serve --port 0 ARGS` until it prints a line starting with `ready`; returns it
/// with the URL it printed.
pub fn hearth_serve_with(args: &[&str], ready: &str) -> (Process, String) {
    serve_with(&hearth_binary(), args, ready)
}

/// `hearth` with Servo built in, from the cache (scripts/build-servo.sh; scripts/test.sh runs it).
pub fn servo_binary() -> PathBuf {
    let cache = hearth_api::catalog::models_dir().parent().expect("the cache folder").to_path_buf();
    let bin = cache.join("servo-target/servo/hearth");
    assert!(bin.is_file(), "{} is missing: build it with scripts/build-servo.sh", bin.display());
    bin
}

/// [`hearth_serve_with`], with the given `hearth` binary.
pub fn serve_with(bin: &Path, args: &[&str], ready: &str) -> (Process, String) {
    let mut child = Command::new(bin)
        .args(["serve", "--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start hearth serve");
    let stdout = child.stdout.take().expect("piped stdout");
    let process = Process(child);
    let mut url = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("hearth's output");
        if let Some(rest) = line.strip_prefix("Hearth is serving on ") {
            url = rest.trim().to_string();
        }
        if line.starts_with(ready) {
            assert!(url.starts_with("http://127.0.0.1:"), "hearth serve printed no URL before {line:?}");
            return (process, url);
        }
    }
    panic!("hearth serve ended before it printed {ready:?}");
}

pub use hearth::chromium::Browser;

/// Opens `url` in a fresh headless Chromium (WebGPU on SwiftShader).
pub async fn open_in_chromium(url: &str) -> Browser {
    Browser::open(url).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Largest |logit − llama.cpp's| allowed on the GPU backend. The GPU keeps activations in f32
/// where llama.cpp's CPU backend (and Hearth's, bit for bit) quantises them to 8 bits for its
/// dot products, and sums in another order; on this model's logits (about ±35) that moves
/// them by up to 0.85 (measured on lavapipe and SwiftShader; the tests print it), and 0.87
/// where `shader-f16` rounds the dequantised weights to f16 (lavapipe). A wrong kernel moves
/// them by whole units.
pub const GPU_LOGIT_TOLERANCE: f64 = 1.0;

/// `[[id, logit], ...]`: one step's most likely tokens, as the engine and the goldens list them.
pub fn ranked(step: &serde_json::Value) -> Vec<(u64, f64)> {
    let pair = |e: &serde_json::Value| (e[0].as_u64().expect("a token id"), e[1].as_f64().expect("a logit"));
    step.as_array().expect("a list of [id, logit]").iter().map(pair).collect()
}

/// A completion's or golden case's `top_logits`: [`ranked`] tokens per step.
pub fn top_logits_of(steps: &serde_json::Value) -> Vec<Vec<(u64, f64)>> {
    steps.as_array().expect("top_logits").iter().map(ranked).collect()
}

/// Checks a greedy run on the GPU against a golden case of greedy.json (llama.cpp's tokens and
/// top logits at each step): every step's top logits within `tolerance` (a token missing from
/// our top list must lie below our last one, within it), and the same token at each step —
/// unless llama.cpp's own logits make the two choices a near tie (within twice the
/// tolerance), after which the continuations differ and the comparison ends. The run may be
/// shorter than the golden one (its first steps are compared). Returns the largest logit
/// difference and the number of steps compared.
pub fn check_gpu_greedy(
    case: &serde_json::Value,
    tokens: &[u64],
    top_logits: &[Vec<(u64, f64)>],
    tolerance: f64,
) -> (f64, usize) {
    let prompt = &case["prompt"];
    let ids: Vec<u64> = case["ids"].as_array().expect("ids").iter().filter_map(|v| v.as_u64()).collect();
    let golden = top_logits_of(&case["top_logits"]);
    assert!(tokens.len() <= ids.len() && tokens.len() == top_logits.len(), "{prompt}: token count");
    let mut worst = 0.0f64;
    for step in 0..tokens.len() {
        let (ours, theirs) = (&top_logits[step], &golden[step]);
        let floor = ours.iter().map(|e| e.1).fold(f64::INFINITY, f64::min);
        for &(token, logit) in theirs {
            let diff = match ours.iter().find(|e| e.0 == token) {
                Some(e) => (e.1 - logit).abs(),
                None => (logit - floor).max(0.0),
            };
            worst = worst.max(diff);
            assert!(diff <= tolerance, "{prompt} step {step}: token {token} logit llama.cpp {logit}, ours {ours:?}");
        }
        if tokens[step] != ids[step] {
            let best = theirs[0].1;
            let chosen = theirs.iter().find(|e| e.0 == tokens[step]).map(|e| e.1);
            assert!(
                chosen.is_some_and(|l| best - l <= 2.0 * tolerance),
                "{prompt} step {step}: we chose {} where llama.cpp chose {} and it is no near tie: {theirs:?}",
                tokens[step],
                ids[step]
            );
            return (worst, step + 1);
        }
    }
    (worst, tokens.len())
}

/// Custom agents (tests/agents/faulty) that trap, panic, loop past their instructions or their
/// wall-clock time, hoard memory, trap on each first attempt, or write outside their memory,
/// beside a well-behaved one, round robin twice; `{faulty}` stands for the module's path.
pub const FAULTY_AGENTS: &str = r#"
[workflow]
name = "faults"
task = "Count to three."
[topology]
kind = "round_robin"
members = ["good", "trapper", "spinner", "stuck", "hog", "flaky", "panicker", "escaper"]
rounds = 2
[[agents]]
name = "good"
module = "{faulty}"
config = "echo"
[[agents]]
name = "trapper"
module = "{faulty}"
config = "trap"
on_fault = "give_up"
[[agents]]
name = "spinner"
module = "{faulty}"
config = "spin"
fuel = 5000000
max_restarts = 1
backoff_ms = 1
[[agents]]
name = "stuck"
module = "{faulty}"
config = "spin"
fuel = 1000000000000
time_budget_ms = 300
on_fault = "give_up"
[[agents]]
name = "hog"
module = "{faulty}"
config = "hog"
memory_mb = 8
max_restarts = 2
backoff_ms = 1
[[agents]]
name = "flaky"
module = "{faulty}"
config = "trap-first"
backoff_ms = 1
[[agents]]
name = "panicker"
module = "{faulty}"
config = "panic"
on_fault = "give_up"
[[agents]]
name = "escaper"
module = "{faulty}"
config = "escape"
max_restarts = 1
backoff_ms = 1
"#;
