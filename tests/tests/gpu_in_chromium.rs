//! The default model on the WebGPU backend in headless Chromium (SwiftShader): the page's
//! engine worker loads it onto the GPU, reports the backend, and a greedy reply follows
//! llama.cpp's goldens with the top logits within `GPU_LOGIT_TOLERANCE` (`check_gpu_greedy`).
//! SwiftShader takes seconds per decode step, so the reply is a few tokens long; the whole
//! forward pass runs at each of them, and natively on lavapipe (gpu_model.rs) the replies are
//! longer. The monitor's GPU profile of a decode step names the kernel families and leaves the
//! conversation as it was.

use std::time::Duration;

use hearth_tests::{GPU_LOGIT_TOLERANCE, check_gpu_greedy, hearth_serve, open_in_chromium};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(600);
const STEPS: usize = 3;

fn golden() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/golden/smollm2-135m-q4_1/greedy.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("golden file")).expect("golden JSON")
}

#[tokio::test]
async fn greedy_reply_on_webgpu_follows_llama_cpp() {
    let (_server, url) = hearth_serve();
    let browser = open_in_chromium(&format!("{url}?backend=gpu")).await;
    browser.wait_for_model(WAIT).await.unwrap_or_else(|e| panic!("{e}"));
    let backend = browser.run("return hearth.backend();", Value::Null, WAIT).await.unwrap();
    assert_eq!(backend, "gpu", "?backend=gpu loads the model onto WebGPU");

    let golden = golden();
    let mut case = golden["cases"][0].clone();
    assert_eq!(case["chat"], Value::Bool(false), "the first golden case is a plain prompt");
    for key in ["ids", "top_logits"] {
        let first: Vec<Value> = case[key].as_array().unwrap()[..STEPS].to_vec();
        case[key] = Value::Array(first);
    }
    let params = json!({"max_tokens": STEPS, "ignore_eos": true, "top_logits": golden["top"]});
    let done = browser
        .run("return await hearth.generate(args[0], args[1]);", json!([{"text": case["prompt"]}, params]), WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let tokens: Vec<u64> = done["tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap()).collect();
    let top_logits = hearth_tests::top_logits_of(&done["top_logits"]);
    let (worst, steps) = check_gpu_greedy(&case, &tokens, &top_logits, GPU_LOGIT_TOLERANCE);
    println!(
        "WebGPU in Chromium: {steps} of {STEPS} steps compared, largest logit difference {worst:.3}; timings {}",
        done["timings"]
    );

    // The monitor's GPU task queue counted the reply's submissions, and has none left over.
    let queue = browser
        .run(
            "await new Promise(r => setTimeout(r, 1200)); \
             const q = document.getElementById('monitor-gpu-queue').dataset; \
             return { submitted: Number(q.submitted), in_flight: Number(q.inFlight) };",
            Value::Null,
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    println!("GPU queue after the reply: {queue}");
    assert!(queue["submitted"].as_u64().unwrap() >= STEPS as u64, "a submit per step at least: {queue}");
    assert_eq!(queue["in_flight"].as_u64(), Some(0), "{queue}");

    // The monitor's GPU profile: one decode step op by op, per kernel family.
    let profile = browser
        .run(
            "document.getElementById('profile-step').click(); \
             let table; \
             while (!(table = document.getElementById('step-profile'))) { \
               const e = document.getElementById('step-profile-error'); if (e) throw new Error(e.textContent); \
               await new Promise(r => setTimeout(r, 200)); } \
             return { total: Number(table.dataset.totalMs), \
                      kernels: [...table.querySelectorAll('tr[data-op]')].map(r => r.dataset.op) };",
            Value::Null,
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    println!("GPU profile of a decode step on SwiftShader: {profile}");
    let kernels: Vec<&str> = profile["kernels"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for family in ["matmul", "attention", "rms_norm", "rope"] {
        assert!(kernels.contains(&family), "{family} in {kernels:?}");
    }
    assert!(profile["total"].as_f64().is_some_and(|ms| ms > 0.0), "{profile}");
    // The conversation's KV cache is untouched: the same greedy reply again.
    let again = browser
        .run("return await hearth.generate(args[0], args[1]);", json!([{"text": case["prompt"]}, params]), WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again["tokens"], done["tokens"], "the same reply after profiling");

    // The device is lost: the model is reloaded onto the CPU from the browser's model cache (the
    // page kept no copy of it) and the reply is llama.cpp's, which the CPU matches exactly.
    let moved = browser
        .run(
            "hearth.destroyGpu(); return await hearth.generate(args[0], args[1]);",
            json!([{"text": case["prompt"]}, params]),
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("after the device was lost: {e}"));
    assert_eq!(moved["tokens"], case["ids"], "the CPU's reply after the device was lost");
    let status = browser
        .run(
            "while (hearth.backend() !== 'cpu') await new Promise(r => setTimeout(r, 50));              return document.getElementById('model-status').textContent;",
            Value::Null,
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    println!("after the device was lost: {status}");
    assert!(status.as_str().unwrap().contains("moved to the CPU"), "the app says so: {status}");
    browser.close().await.unwrap();
}
