//! Medium models (1B and 3B parameters) in the page, in headless Chromium, through
//! `hearth generate --engine chromium --model FILE` (the launcher serves the file to the page
//! for the session): on the CPU backend in both runtime builds and on WebGPU (SwiftShader, so
//! a short prompt and a few tokens), the model loads, picks the tokens a float64 forward pass
//! of the same file picks wherever its choice is clear, and the page's memory stays within its
//! budget: on the CPU the weights are in wasm memory once; on the GPU the file never is, only
//! a tensor at a time on its way to the GPU, and no CPU copy is kept.

use std::path::Path;
use std::time::Duration;

use hearth::engines::{self, EngineKind, PageModel};
use hearth_core::engine::{BackendChoice, GenerateParams, Prompt};
use hearth_core::sampler::SamplerConfig;
use hearth_tests::medium::*;
use serde_json::Value;

/// What the page's wasm memory holds besides the model and its KV cache: code, the thread
/// pool's stacks, scratch for a chunk of prefill (seen: 14 MB on the CPU, 130 MB on the GPU
/// with its staging).
const PAGE_OVERHEAD: u64 = 160 << 20;

const PROMPT: &str = "The quick brown fox jumps over the lazy dog. Once upon a time";

/// The page's memory from a completion's `page_memory` (its engine's latest monitor sample):
/// (wasm memory, of it in use, GPU buffers).
fn page_memory(done: &Value) -> (u64, u64, u64) {
    let memory = &done["page_memory"];
    let field = |name: &str| memory[name].as_u64().unwrap_or_else(|| panic!("page_memory.{name}: {done}"));
    (field("wasm_bytes"), field("heap_bytes"), memory["gpu_bytes"].as_u64().unwrap_or(0))
}

/// On the CPU the weights live in wasm memory once: its high-water mark is at most the file,
/// the KV cache and [`PAGE_OVERHEAD`].
fn check_cpu_memory(what: &str, done: &Value, file: u64, kv: u64) {
    let (wasm, heap, _) = page_memory(done);
    let budget = file + kv + PAGE_OVERHEAD;
    println!(
        "{what}: wasm memory {:.0} MB ({:.2}x the {:.0} MB file; {:.0} MB in use), budget {:.0} MB",
        wasm as f64 / 1e6,
        wasm as f64 / file as f64,
        file as f64 / 1e6,
        heap as f64 / 1e6,
        budget as f64 / 1e6
    );
    assert!(heap >= file, "{what}: the weights ({file} bytes) are not in wasm memory ({heap} in use)");
    assert!(wasm <= budget, "{what}: wasm memory grew to {wasm}, over the budget {budget}");
}

/// On the GPU the file never is in wasm memory: its high-water mark is at most two copies of
/// the largest tensor (read, and rearranged for upload) and [`PAGE_OVERHEAD`]; once loaded,
/// no CPU copy of the weights is left, and the GPU holds them.
fn check_gpu_memory(what: &str, done: &Value, file: u64, largest: u64) {
    let (wasm, heap, gpu) = page_memory(done);
    let budget = 2 * largest + PAGE_OVERHEAD;
    println!(
        "{what}: wasm memory {:.0} MB for a {:.0} MB file ({:.0} MB in use), GPU buffers {:.0} MB, budget {:.0} MB",
        wasm as f64 / 1e6,
        file as f64 / 1e6,
        heap as f64 / 1e6,
        gpu as f64 / 1e6,
        budget as f64 / 1e6
    );
    assert!(wasm <= budget, "{what}: wasm memory grew to {wasm}, over the budget {budget}");
    assert!(heap < PAGE_OVERHEAD, "{what}: {heap} bytes still in use after the upload");
    assert!(gpu >= file * 9 / 10, "{what}: the GPU holds {gpu} bytes for a {file}-byte file");
}

/// A greedy run in the page opened with `query` added to its URL (the single-threaded build:
/// `&build=single`), through the launcher's library as `hearth generate --engine chromium`
/// runs it: (prompt ids, the completion with `page_memory`, as `--json` prints it).
fn greedy_in_page_with(query: &str, model: &Path, ctx: usize, prompt: &str, tokens: usize) -> (Vec<u64>, Value) {
    let prompt_ids = ids(&hearth_json(&["tokenize", "--model", model.to_str().unwrap(), prompt]));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let done = runtime.block_on(async {
        let page_model = PageModel::of(model).unwrap();
        let listener = hearth::server::bind(0).await.unwrap();
        let url = engines::serve_in_background(listener, None, page_model.session.clone()).unwrap();
        let url = engines::model_page_url(&url, BackendChoice::Cpu, &page_model, ctx) + query;
        let page = engines::open_page(EngineKind::Chromium, &url).await.unwrap();
        let wait = Duration::from_secs(600);
        hearth::page::wait_for_model(page.as_ref(), wait).await.unwrap();
        let params = GenerateParams {
            max_tokens: tokens,
            ignore_eos: true,
            top_logits: 8,
            sampler: SamplerConfig { temperature: 0.0, ..Default::default() },
            ..Default::default()
        };
        let (deltas, _text) = tokio::sync::mpsc::unbounded_channel();
        let done =
            hearth::page::generate(page.as_ref(), &Prompt::Text(prompt.into()), &params, &deltas, wait).await.unwrap();
        // A monitor sample from after the generation.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let state = hearth::page::engine_state(page.as_ref()).await.unwrap();
        let mut done = serde_json::to_value(&done).unwrap();
        done["page_memory"] = state["monitor"].clone();
        done["context"] = state["context"].clone();
        done
    });
    assert_eq!(done["context"].as_u64(), Some(ctx as u64), "{done}");
    (prompt_ids, done)
}

#[test]
fn llama_1b_q4_0_in_chromium_on_the_cpu_picks_the_float64_tokens_with_its_weights_once() {
    let model = medium_model("llama-1b-q4_0.gguf");
    let kv = kv_bytes(16, 512, 512);
    // The threaded build, as `hearth generate --engine chromium` runs it.
    let (prompt, _, done) = greedy_in("chromium", &model, "cpu", 512, PROMPT, 8);
    assert_eq!(done["backend"], "cpu", "{done}");
    check_against_float64(&model, &prompt, &done, CPU_TOLERANCE);
    check_cpu_memory("threaded build", &done, file_size(&model), kv);
    // The single-threaded build.
    let (prompt, done) = greedy_in_page_with("&build=single", &model, 512, PROMPT, 8);
    check_against_float64(&model, &prompt, &done, CPU_TOLERANCE);
    check_cpu_memory("single-threaded build", &done, file_size(&model), kv);
}

#[test]
fn llama_1b_q4_0_in_chromium_on_webgpu_picks_the_float64_tokens_without_the_file_in_wasm_memory() {
    let model = medium_model("llama-1b-q4_0.gguf");
    // Two tokens: SwiftShader takes about 13 s a token to prefill and 23 s to decode.
    let (prompt, _, done) = greedy_in("chromium", &model, "gpu", 256, PROMPT, 2);
    assert_eq!(done["backend"], "gpu", "{done}");
    check_against_float64(&model, &prompt, &done, GPU_TOLERANCE);
    check_gpu_memory("webgpu", &done, file_size(&model), q4_0_embedding(2048));
}

#[test]
fn llama_3b_q4_0_in_chromium_generates_on_the_cpu_and_loads_onto_webgpu() {
    let model = medium_model("llama-3b-q4_0.gguf");
    let (_, tokens, done) = greedy_in("chromium", &model, "cpu", 256, "Hello", 4);
    assert_eq!((done["backend"].as_str(), tokens.len()), (Some("cpu"), 4), "{done}");
    check_cpu_memory("3B on the CPU", &done, file_size(&model), kv_bytes(28, 1024, 256));
    // A one-token prompt and its next token: SwiftShader takes seconds a token on 3B.
    let (_, tokens, done) = greedy_in("chromium", &model, "gpu", 256, "Hello", 1);
    assert_eq!((done["backend"].as_str(), tokens.len()), (Some("gpu"), 1), "{done}");
    check_gpu_memory("3B on WebGPU", &done, file_size(&model), q4_0_embedding(3072));
}
