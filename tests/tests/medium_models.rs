//! Medium models (1B and 3B parameters) natively: they load, generate the tokens a float64
//! forward pass of the same file picks wherever its choice is clear, and stay within their
//! memory budget; a model too large for this machine and a truncated one are refused with the
//! numbers. The files are written by scripts/medium-models.sh (scripts/test.sh runs it; they
//! are cached): llama- and qwen2-shaped, seeded random weights, the default model's tokenizer.
//! Random weights leave small margins between the top two logits, where engines that round
//! differently (Hearth quantises activations to 8 bits, as llama.cpp does) may pick either
//! token: there only the logits are compared, not the token, and a run with no clear step
//! fails.

use std::process::Command;

use hearth_tests::hearth_binary;
use hearth_tests::medium::*;
use serde_json::Value;

/// The peak resident memory of a one-token run of the default model on `backend`: (peak, file).
fn baseline(backend: &str) -> (u64, u64) {
    let model = hearth_api::catalog::models_dir().join(hearth_api::catalog::DEFAULT_MODEL.file);
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
