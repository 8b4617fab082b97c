//! Medium models (1B and 3B parameters) for the tests: the files scripts/medium-models.sh
//! writes (scripts/test.sh runs it; they are cached), and the checks against its float64
//! forward pass of the same file. Random weights leave small margins between the top two
//! logits, where engines that round differently (Hearth quantises activations to 8 bits, as
//! llama.cpp does) may pick either token: there only the logits are compared, not the token,
//! and a run with no clear step fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::{hearth_binary, ranked, top_logits_of};

/// Largest |logit − float64's| allowed on the CPU: Hearth (as llama.cpp) quantises the
/// activations to 8 bits for its dot products and keeps an f16 KV cache (seen: up to 0.15 on
/// logits of about ±12; the tests print it).
pub const CPU_TOLERANCE: f64 = 0.3;
/// The GPU keeps activations in f32 and rounds Q4_0 weights to f16 where it has `shader-f16`
/// (seen: 0.006).
pub const GPU_TOLERANCE: f64 = 0.05;

/// Resident memory may grow by at most this much per byte of model file over the default
/// model's run on the same backend (which holds what does not grow with the model: code, the
/// thread pool, the GPU driver and its compiled kernels), besides the larger KV cache.
pub const MEMORY_PER_FILE_BYTE: f64 = 1.1;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn medium_model(name: &str) -> PathBuf {
    let path = hearth_api::catalog::models_dir().join("medium").join(name);
    assert!(path.is_file(), "{} is missing: run `bash scripts/medium-models.sh make`", path.display());
    path
}

/// Runs `hearth ARGS`, which must succeed, and returns its last line of JSON. Run as on a
/// machine without a login session (no `XDG_RUNTIME_DIR`), where Mesa used to print noise.
pub fn hearth_json(args: &[&str]) -> Value {
    let out = Command::new(hearth_binary()).args(args).env_remove("XDG_RUNTIME_DIR").output().expect("run hearth");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "hearth {args:?}: {stderr}");
    assert!(!stderr.contains("XDG_RUNTIME_DIR"), "hearth {args:?} printed display noise: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().rev().find(|l| l.starts_with(['{', '['])).unwrap_or_else(|| panic!("no JSON: {stdout}"));
    serde_json::from_str(last).expect("JSON")
}

pub fn ids(v: &Value) -> Vec<u64> {
    v.as_array().expect("an array of ids").iter().map(|x| x.as_u64().expect("an id")).collect()
}

/// A greedy run natively: (prompt ids, generated ids, the `--json` record).
pub fn greedy(model: &Path, backend: &str, ctx: usize, prompt: &str, tokens: usize) -> (Vec<u64>, Vec<u64>, Value) {
    greedy_in("native", model, backend, ctx, prompt, tokens)
}

/// A greedy run of `hearth generate --engine ENGINE`: (prompt ids, generated ids, the `--json`
/// record).
pub fn greedy_in(
    engine: &str,
    model: &Path,
    backend: &str,
    ctx: usize,
    prompt: &str,
    tokens: usize,
) -> (Vec<u64>, Vec<u64>, Value) {
    let model = model.to_str().unwrap();
    let prompt_ids = ids(&hearth_json(&["tokenize", "--model", model, prompt]));
    let (ctx, tokens) = (ctx.to_string(), tokens.to_string());
    let done = hearth_json(&[
        "generate",
        "--engine",
        engine,
        "--model",
        model,
        "--backend",
        backend,
        "--ctx",
        &ctx,
        "--prompt",
        prompt,
        "--max-tokens",
        &tokens,
        "--ignore-eos",
        "--json",
        "--top-logits",
        "8",
    ]);
    assert_eq!(done["prompt_tokens"].as_u64(), Some(prompt_ids.len() as u64), "{done}");
    assert_eq!(done["context"].as_u64(), Some(ctx.parse().unwrap()), "{done}");
    (prompt_ids, ids(&done["tokens"]), done)
}

/// Checks a greedy run against a float64 forward pass of the same file, teacher-forced on
/// Hearth's tokens: at every step the logits of the tokens both top-8 lists hold agree within
/// `tolerance`; where the reference's top two are further apart than twice that (so no error
/// within the tolerance could swap them), the token is the reference's; and some step is.
pub fn check_against_float64(model: &Path, prompt: &[u64], done: &Value, tolerance: f64) {
    let generated = ids(&done["tokens"]);
    let ours = top_logits_of(&done["top_logits"]);
    assert_eq!(ours.len(), generated.len(), "a top-logits list per step");
    let sequence: Vec<u64> = prompt.iter().chain(&generated[..generated.len() - 1]).copied().collect();
    let out = Command::new("bash")
        .arg(repo().join("scripts/medium-models.sh"))
        .args(["reference", model.to_str().unwrap(), &serde_json::to_string(&sequence).unwrap()])
        .output()
        .expect("run the float64 reference");
    assert!(out.status.success(), "the reference failed: {}", String::from_utf8_lossy(&out.stderr));
    let reference: Value = serde_json::from_slice(&out.stdout).expect("the reference's JSON");
    let steps = reference["steps"].as_array().expect("steps");
    let (mut clear, mut worst) = (0, 0.0f64);
    for (i, &token) in generated.iter().enumerate() {
        let step = &steps[prompt.len() - 1 + i];
        let top = ranked(&step["top"]);
        for (id, logit) in &top {
            if let Some((_, mine)) = ours[i].iter().find(|(t, _)| t == id) {
                worst = worst.max((mine - logit).abs());
            }
        }
        let (best, margin) = (top[0].0, step["margin"].as_f64().unwrap());
        println!("{}: step {i}: hearth {token}, float64 {best} (margin {margin:.3})", model.display());
        if margin > 2.0 * tolerance {
            clear += 1;
            assert_eq!(token, best, "step {i}: the float64 reference picks {best} by {margin:.3}: {top:?}");
        }
    }
    println!("{}: largest logit difference from float64 {worst:.4}, {clear} clear steps", model.display());
    assert!(worst <= tolerance, "logits differ from float64 by {worst}, more than {tolerance}");
    assert!(clear > 0, "none of {} steps had a clear margin", generated.len());
}

pub fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// Bytes of a Q4_0 embedding of the default tokenizer's 49152 tokens, `dim` wide: the largest
/// tensor of the medium Q4_0 models.
pub fn q4_0_embedding(dim: u64) -> u64 {
    49152 * dim / 32 * 18
}

/// f16 keys and values of every layer at `ctx` positions.
pub fn kv_bytes(layers: u64, kv_dim: u64, ctx: u64) -> u64 {
    layers * ctx * kv_dim * 2 * 2
}
