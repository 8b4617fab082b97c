//! The engine in wasm against llama.cpp (tests/golden/, made by scripts/make-goldens.sh), in
//! headless Chromium through the page's `window.hearth` API, for both runtime builds: every
//! tokenization case gives llama.cpp's ids, and every greedy case gives its tokens with the
//! top logits at each step within `LOGIT_TOLERANCE`.

use std::time::Duration;

use hearth_tests::{Browser, check_gpu_greedy, hearth_serve, open_in_chromium};
use serde_json::{Value, json};

/// Largest |logit − llama.cpp's| allowed. Natively the difference is exactly 0 (see
/// core-wasm/tests/llama_golden.rs); in wasm the same kernels run in the same float order, and
/// only libm's sin/cos/pow (RoPE) may round differently — the test prints what it measured.
const LOGIT_TOLERANCE: f64 = 1e-3;
const WAIT: Duration = Duration::from_secs(600);

fn golden(name: &str) -> Value {
    let path = format!("{}/golden/smollm2-135m-q4_1/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("golden file")).expect("golden JSON")
}

async fn run_in_page(browser: &Browser, body: &str, args: Value) -> Value {
    browser.run(body, args, WAIT).await.unwrap_or_else(|e| panic!("{e}"))
}

async fn engine_matches_llama_cpp(url: &str, build: &str) {
    let browser = open_in_chromium(url).await;
    browser.wait_for_model(WAIT).await.unwrap_or_else(|e| panic!("{build} build: {e}"));

    let tokens = golden("tokens.json");
    let cases = tokens["cases"].as_array().unwrap();
    let inputs: Vec<Value> = cases.iter().map(|c| json!({"text": c["text"], "special": c["add_special"]})).collect();
    let got = run_in_page(
        &browser,
        "const out = []; for (const c of args) out.push(await hearth.tokenize(c.text, c.special)); return out;",
        Value::Array(inputs),
    )
    .await;
    for (case, ids) in cases.iter().zip(got.as_array().unwrap()) {
        assert_eq!(case["add_special"], case["parse_special"], "the API sets both together");
        assert_eq!(ids, &case["ids"], "{build} build: tokens of {} (special {})", case["text"], case["add_special"]);
    }

    let greedy = golden("greedy.json");
    let mut worst = 0.0f64;
    for case in greedy["cases"].as_array().unwrap() {
        let steps = case["ids"].as_array().unwrap().len();
        let prompt = if case["chat"] == Value::Bool(true) {
            json!({"chat": [{"role": "user", "content": case["prompt"]}]})
        } else {
            json!({"text": case["prompt"]})
        };
        let params = json!({"max_tokens": steps, "ignore_eos": true, "top_logits": greedy["top"]});
        let done =
            run_in_page(&browser, "return await hearth.generate(args[0], args[1]);", json!([prompt, params])).await;
        assert_eq!(done["tokens"], case["ids"], "{build} build: greedy tokens of {}", case["prompt"]);
        assert_eq!(done["prompt_tokens"].as_u64().unwrap() as usize, case["prompt_ids"].as_array().unwrap().len());
        for (step, (ours, theirs)) in
            done["top_logits"].as_array().unwrap().iter().zip(case["top_logits"].as_array().unwrap()).enumerate()
        {
            for (a, b) in ours.as_array().unwrap().iter().zip(theirs.as_array().unwrap()) {
                assert_eq!(a[0], b[0], "{build} build: step {step} of {}: top ids {ours} vs {theirs}", case["prompt"]);
                worst = worst.max((a[1].as_f64().unwrap() - b[1].as_f64().unwrap()).abs());
            }
        }
    }
    println!("{build} build: largest |logit - llama.cpp| over the golden top logits: {worst:e}");
    assert!(worst <= LOGIT_TOLERANCE, "{build} build: logits differ by {worst}");
    browser.close().await.expect("close the Chromium session");
}

#[tokio::test(flavor = "multi_thread")]
async fn threaded_wasm_engine_matches_llama_cpp() {
    let (_server, url) = hearth_serve();
    engine_matches_llama_cpp(&url, "threaded").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn single_threaded_wasm_engine_matches_llama_cpp() {
    let (_server, url) = hearth_serve();
    engine_matches_llama_cpp(&format!("{url}?build=single"), "single-threaded").await;
}

/// The WebGPU backend (SwiftShader here, forced with `?backend=gpu` since `auto` passes
/// software adapters over): llama.cpp's greedy tokens, top logits within the GPU tolerance.
#[tokio::test(flavor = "multi_thread")]
async fn webgpu_engine_gives_llama_cpp_s_greedy_tokens() {
    let (_server, url) = hearth_serve();
    let browser = open_in_chromium(&format!("{url}?backend=gpu")).await;
    browser.wait_for_model(WAIT).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run_in_page(&browser, "return hearth.backend();", json!([])).await, "gpu", "the model is on the GPU");
    let greedy = golden("greedy.json");
    let (mut worst, mut steps) = (0.0f64, 0);
    // Two cases keep SwiftShader's time in bounds: a text prompt and a chat prompt.
    let cases = greedy["cases"].as_array().unwrap();
    for case in [&cases[0], &cases[3]] {
        let n = case["ids"].as_array().unwrap().len();
        let prompt = if case["chat"] == Value::Bool(true) {
            json!({"chat": [{"role": "user", "content": case["prompt"]}]})
        } else {
            json!({"text": case["prompt"]})
        };
        let generate = "return await hearth.generate(args[0], args[1]);";
        // Greedy without logits: the GPU picks each token itself and reads back 8 bytes.
        let fast = json!({"max_tokens": n, "ignore_eos": true});
        let fast = run_in_page(&browser, generate, json!([prompt, fast])).await;
        let with_logits = json!({"max_tokens": n, "ignore_eos": true, "top_logits": greedy["top"]});
        let done = run_in_page(&browser, generate, json!([prompt, with_logits])).await;
        assert_eq!(fast["tokens"], done["tokens"], "argmax on the GPU = argmax of the logits read back");
        let tokens: Vec<u64> = done["tokens"].as_array().unwrap().iter().filter_map(Value::as_u64).collect();
        let top_logits: Vec<Vec<(u64, f64)>> = done["top_logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_array().unwrap().iter().map(|e| (e[0].as_u64().unwrap(), e[1].as_f64().unwrap())).collect())
            .collect();
        let (w, s) = check_gpu_greedy(case, &tokens, &top_logits);
        worst = worst.max(w);
        steps += s;
    }
    println!("WebGPU: {steps} golden steps compared, largest |logit - llama.cpp| {worst}");
    browser.close().await.expect("close the Chromium session");
}
