//! The llama forward pass against llama.cpp on the default model (tests/golden/, made by
//! scripts/make-goldens.sh): the same greedy tokens, and logits within a stated tolerance.

use hearth_core::catalog::{DEFAULT_MODEL, models_dir};
use hearth_core::gguf::Gguf;
use hearth_core::model::llama::Llama;
use serde_json::Value;

/// Largest |logit - llama.cpp logit| allowed over the recorded top logits. Natively the CPU
/// kernels reproduce the reference's bits (the difference printed is 0); the tolerance leaves
/// room for libm differences (sin, cos, pow in RoPE) on other platforms.
const LOGIT_TOLERANCE: f32 = 1e-3;

fn golden() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/golden/smollm2-135m-q4_1/greedy.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("golden file")).expect("golden JSON")
}

fn load() -> Llama {
    let path = models_dir().join(DEFAULT_MODEL.file);
    let file =
        std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e} (run scripts/fetch-model.sh)", path.display()));
    let g = Gguf::read(&file).unwrap();
    Llama::load(&g, &file, 512).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn argmax(logits: &[f32]) -> u32 {
    logits.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best }).0
        as u32
}

#[test]
fn greedy_tokens_and_logits_match_llama_cpp() {
    let golden = golden();
    let mut model = load();
    let mut worst = 0.0f32;
    for case in golden["cases"].as_array().unwrap() {
        let prompt = ids(&case["prompt_ids"]);
        let expected = ids(&case["ids"]);
        let mut logits = model.forward(&prompt, 0, false).unwrap();
        let mut got = Vec::new();
        for (step, top) in case["top_logits"].as_array().unwrap().iter().enumerate() {
            for pair in top.as_array().unwrap() {
                let (id, want) = (pair[0].as_u64().unwrap() as usize, pair[1].as_f64().unwrap() as f32);
                let diff = (logits[id] - want).abs();
                worst = worst.max(diff);
                assert!(
                    diff <= LOGIT_TOLERANCE,
                    "{:?} step {step} token {id}: {} vs {want}",
                    case["prompt"],
                    logits[id]
                );
            }
            let next = argmax(&logits);
            got.push(next);
            // Teacher forcing: follow llama.cpp's tokens so every step compares like with like.
            logits = model.forward(&[expected[step]], prompt.len() + step, false).unwrap();
        }
        assert_eq!(got, expected, "greedy continuation of {:?}", case["prompt"]);
    }
    eprintln!("largest logit difference from llama.cpp: {worst}");
}

#[test]
fn chunked_prefill_equals_one_pass() {
    let prompt = ids(&golden()["cases"][1]["prompt_ids"]);
    let mut model = load();
    let one = model.forward(&prompt, 0, true).unwrap();
    let mut pos = 0;
    let mut chunked = Vec::new();
    for chunk in prompt.chunks(3) {
        chunked.extend(model.forward(chunk, pos, true).unwrap());
        pos += chunk.len();
    }
    let worst = one.iter().zip(&chunked).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(worst < 1e-3, "chunked prefill differs by {worst}");
}

#[test]
fn context_overflow_and_bad_tokens_are_errors() {
    let mut model = load();
    let err = model.forward(&[1; 600], 0, false).unwrap_err().to_string();
    assert!(err.contains("600") && err.contains("512"), "{err}");
    let err = model.forward(&[49152], 0, false).unwrap_err().to_string();
    assert!(err.contains("49152"), "{err}");
}
