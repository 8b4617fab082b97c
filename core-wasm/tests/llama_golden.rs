//! The llama forward pass against llama.cpp on the default model (tests/golden/, made by
//! scripts/make-goldens.sh): the same greedy tokens, and logits within a stated tolerance.

mod common;

use hearth_api::catalog::DEFAULT_MODEL;
use hearth_core::model::transformer::Transformer;
use serde_json::Value;

/// Largest |logit - llama.cpp logit| allowed over the recorded top logits. Natively the CPU
/// kernels reproduce the reference's bits (the difference printed is 0); the tolerance leaves
/// room for libm differences (sin, cos, pow in RoPE) on other platforms.
const LOGIT_TOLERANCE: f32 = 1e-3;

fn golden() -> Value {
    common::golden("smollm2-135m-q4_1", "greedy.json")
}

fn load() -> Transformer {
    common::load(&DEFAULT_MODEL, 512)
}

use common::ids;

#[test]
fn greedy_tokens_and_logits_match_llama_cpp() {
    let worst = common::check_greedy(&mut load(), &golden(), LOGIT_TOLERANCE);
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

#[test]
fn a_decode_step_profile_names_where_the_time_goes_and_the_next_token_is_unchanged() {
    let prompt = ids(&golden()["cases"][0]["prompt_ids"]);
    let next = prompt.len();
    let mut plain = load();
    plain.forward(&prompt, 0, false).unwrap();
    let want = plain.forward(&[42], next, false).unwrap();

    let mut profiled = load();
    profiled.forward(&prompt, 0, false).unwrap();
    // At the next token's position, as the engine profiles: the step after overwrites it.
    let ops = profiled.profile_decode(0, next).unwrap();
    let families: Vec<&str> = ops.iter().map(|(op, _)| *op).collect();
    for family in ["matmul q/k/v", "matmul gate/up", "matmul down", "matmul output", "attention", "rms_norm"] {
        assert!(families.contains(&family), "{family} in {families:?}");
    }
    assert!(ops.windows(2).all(|w| w[0].1 >= w[1].1), "slowest first: {ops:?}");
    assert!(ops.iter().map(|(_, ms)| ms).sum::<f64>() > 0.0, "{ops:?}");
    let got = profiled.forward(&[42], next, false).unwrap();
    assert_eq!(got, want, "the token after a profiled step");
}
