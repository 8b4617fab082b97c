//! Medium models (1B and 3B parameters) natively: they load, generate the tokens a float64
//! forward pass of the same file picks wherever its choice is clear, and stay within their
//! memory budget; a model too large for this machine and a truncated one are refused with the
//! numbers. The files are written by scripts/medium-models.sh (scripts/test.sh runs it; they
//! are cached): llama- and qwen2-shaped, seeded random weights, the default model's tokenizer.
//! Random weights leave small margins between the top two logits, where engines that round
//! differently (Hearth quantises activations to 8 bits, as llama.cpp does) may pick either
//! token: there only the logits are compared, not the token, and a run with no clear step
//! fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use hearth_tests::{hearth_binary, ranked, top_logits_of};
use serde_json::Value;

/// Largest |logit − float64's| allowed on the CPU: Hearth (as llama.cpp) quantises the
/// activations to 8 bits for its dot products and keeps an f16 KV cache (seen: up to 0.15 on
/// logits of about ±12; the tests print it).
const CPU_TOLERANCE: f64 = 0.3;
/// The GPU keeps activations in f32 and rounds Q4_0 weights to f16 where it has `shader-f16`
/// (seen: 0.006).
const GPU_TOLERANCE: f64 = 0.05;

/// Resident memory may grow by at most this much per byte of model file over the default
/// model's run on the same backend (which holds what does not grow with the model: code, the
/// thread pool, the GPU driver and its compiled kernels), besides the larger KV cache.
const MEMORY_PER_FILE_BYTE: f64 = 1.1;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn medium_model(name: &str) -> PathBuf {
    let path = hearth_core::catalog::models_dir().join("medium").join(name);
    assert!(path.is_file(), "{} is missing: run `bash scripts/medium-models.sh make`", path.display());
    path
}

/// Runs `hearth ARGS`, which must succeed, and returns its last line of JSON. Run as on a
/// machine without a login session (no `XDG_RUNTIME_DIR`), where Mesa used to print noise.
fn hearth_json(args: &[&str]) -> Value {
    let out = Command::new(hearth_binary()).args(args).env_remove("XDG_RUNTIME_DIR").output().expect("run hearth");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "hearth {args:?}: {stderr}");
    assert!(!stderr.contains("XDG_RUNTIME_DIR"), "hearth {args:?} printed display noise: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().rev().find(|l| l.starts_with(['{', '['])).unwrap_or_else(|| panic!("no JSON: {stdout}"));
    serde_json::from_str(last).expect("JSON")
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array().expect("an array of ids").iter().map(|x| x.as_u64().expect("an id")).collect()
}

/// A greedy run: (prompt ids, generated ids, the `--json` record).
fn greedy(model: &Path, backend: &str, ctx: usize, prompt: &str, tokens: usize) -> (Vec<u64>, Vec<u64>, Value) {
    let model = model.to_str().unwrap();
    let prompt_ids = ids(&hearth_json(&["tokenize", "--model", model, prompt]));
    let (ctx, tokens) = (ctx.to_string(), tokens.to_string());
    let done = hearth_json(&[
        "generate",
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
fn check_against_float64(model: &Path, prompt: &[u64], done: &Value, tolerance: f64) {
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

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// Bytes of a Q4_0 embedding of the default tokenizer's 49152 tokens, `dim` wide: the largest
/// tensor of the medium Q4_0 models.
fn q4_0_embedding(dim: u64) -> u64 {
    49152 * dim / 32 * 18
}

/// f16 keys and values of every layer at `ctx` positions.
fn kv_bytes(layers: u64, kv_dim: u64, ctx: u64) -> u64 {
    layers * ctx * kv_dim * 2 * 2
}

/// The peak resident memory of a one-token run of the default model on `backend`: (peak, file).
fn baseline(backend: &str) -> (u64, u64) {
    let model = hearth_core::catalog::models_dir().join(hearth_core::catalog::DEFAULT_MODEL.file);
    let args = ["generate", "--backend", backend, "--ctx", "256", "--prompt", "Hi", "--max-tokens", "1", "--json"];
    let done = hearth_json(&args);
    (done["peak_rss_bytes"].as_u64().expect("peak_rss_bytes"), file_size(&model))
}

/// The run's peak resident memory, over the default model's on the same backend, is at most
/// [`MEMORY_PER_FILE_BYTE`] per byte of file more, plus the KV cache; on the GPU (lavapipe,
/// whose memory is the host's) plus two copies of the largest tensor, `largest`: its
/// rearranged bytes and their staging copy while it uploads.
fn check_peak_memory(done: &Value, file: u64, kv: u64, largest: u64) {
    let backend = done["backend"].as_str().expect("backend");
    let (base, base_file) = baseline(backend);
    let peak = done["peak_rss_bytes"].as_u64().expect("peak_rss_bytes");
    let transient = if backend == "gpu" { 2 * largest } else { 0 };
    let budget = base + (MEMORY_PER_FILE_BYTE * (file - base_file) as f64) as u64 + kv + transient;
    println!(
        "{backend}: peak resident {:.0} MB for a {:.0} MB file ({:.2}x the file; {:.3} per byte over the default \
         model's {:.0} MB), KV cache {:.0} MB, budget {:.0} MB",
        peak as f64 / 1e6,
        file as f64 / 1e6,
        peak as f64 / file as f64,
        peak.saturating_sub(base) as f64 / (file - base_file) as f64,
        base as f64 / 1e6,
        kv as f64 / 1e6,
        budget as f64 / 1e6
    );
    assert!(peak <= budget, "peak resident memory {peak} is over the budget {budget}: {done}");
}

const PROMPT: &str = "The quick brown fox jumps over the lazy dog. Once upon a time";

#[test]
fn llama_1b_q4_0_on_the_cpu_picks_the_float64_tokens_in_its_file_size() {
    let model = medium_model("llama-1b-q4_0.gguf");
    let (prompt, _, done) = greedy(&model, "cpu", 512, PROMPT, 12);
    assert_eq!(done["backend"], "cpu");
    check_against_float64(&model, &prompt, &done, CPU_TOLERANCE);
    check_peak_memory(&done, file_size(&model), kv_bytes(16, 512, 512), q4_0_embedding(2048));
}

#[test]
fn llama_1b_q8_0_and_q4_k_on_the_cpu_pick_the_float64_tokens() {
    for name in ["llama-1b-q8_0.gguf", "llama-1b-q4_k.gguf"] {
        let model = medium_model(name);
        let (prompt, _, done) = greedy(&model, "cpu", 512, PROMPT, 8);
        check_against_float64(&model, &prompt, &done, CPU_TOLERANCE);
        check_peak_memory(&done, file_size(&model), kv_bytes(16, 512, 512), q4_0_embedding(2048));
    }
}

#[test]
fn qwen2_1b_with_biases_on_the_cpu_picks_the_float64_tokens() {
    let model = medium_model("qwen2-1b-q4_0.gguf");
    let (prompt, _, done) = greedy(&model, "cpu", 512, PROMPT, 12);
    check_against_float64(&model, &prompt, &done, CPU_TOLERANCE);
    check_peak_memory(&done, file_size(&model), kv_bytes(28, 256, 512), q4_0_embedding(1536));
}

/// On lavapipe the GPU's memory is this process's, so its buffers count too: the CPU keeps no
/// copy of the weights, and the uploads' staging copies are freed as the model loads.
#[test]
fn llama_1b_q4_0_on_the_gpu_picks_the_float64_tokens_with_no_cpu_copy() {
    let model = medium_model("llama-1b-q4_0.gguf");
    let (prompt, _, done) = greedy(&model, "gpu", 256, PROMPT, 4);
    assert_eq!(done["backend"], "gpu", "{done}");
    check_against_float64(&model, &prompt, &done, GPU_TOLERANCE);
    check_peak_memory(&done, file_size(&model), kv_bytes(16, 512, 256), q4_0_embedding(2048));
}

#[test]
fn llama_3b_q4_0_loads_and_generates_on_the_cpu_and_the_gpu() {
    let model = medium_model("llama-3b-q4_0.gguf");
    let kv = kv_bytes(28, 1024, 256);
    let (_, cpu, done) = greedy(&model, "cpu", 256, "Hello", 4);
    assert_eq!(cpu.len(), 4);
    check_peak_memory(&done, file_size(&model), kv, q4_0_embedding(3072));
    let (_, gpu, done) = greedy(&model, "gpu", 256, "Hello", 2);
    assert_eq!(done["backend"], "gpu", "{done}");
    assert_eq!(gpu.len(), 2);
    check_peak_memory(&done, file_size(&model), kv, q4_0_embedding(3072));
}

#[test]
fn a_model_larger_than_this_machine_is_refused_with_the_numbers_before_loading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("llama-405b-shape.gguf");
    let out = Command::new("bash")
        .arg(repo().join("scripts/medium-models.sh"))
        .args(["too-large", path.to_str().unwrap()])
        .output()
        .expect("write the header");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let started = std::time::Instant::now();
    let out = Command::new(hearth_binary())
        .args(["generate", "--backend", "cpu", "--model", path.to_str().unwrap(), "--prompt", "Hi"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("the model needs") && stderr.contains("GB on the CPU"), "{stderr}");
    assert!(stderr.contains("this machine's available memory is"), "{stderr}");
    assert!(stderr.contains("not even its weights fit"), "{stderr}");
    // The header alone was read: a 229 GB file is not paged in.
    assert!(started.elapsed().as_secs() < 20, "took {:?}", started.elapsed());
}

#[test]
fn a_truncated_1b_file_is_a_clear_error() {
    let model = medium_model("llama-1b-q4_0.gguf");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("truncated.gguf");
    let full = file_size(&model);
    let mut from = std::fs::File::open(&model).unwrap();
    let mut to = std::fs::File::create(&path).unwrap();
    std::io::copy(&mut std::io::Read::take(&mut from, full / 2), &mut to).unwrap();
    let out = Command::new(hearth_binary())
        .args(["generate", "--backend", "cpu", "--model", path.to_str().unwrap(), "--prompt", "Hi"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("runs past the end of the file"), "{stderr}");
    assert!(stderr.contains("truncated.gguf") && stderr.contains("data bytes"), "{stderr}");
}
