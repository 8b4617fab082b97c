//! What the golden tests share: reading fixtures from tests/golden/ (made by
//! scripts/make-goldens.sh from llama.cpp) and replaying greedy cases against a model.
#![allow(dead_code)] // each test binary uses part of it

use std::path::PathBuf;

use hearth_api::catalog::{ModelEntry, models_dir};
use hearth_core::gguf::Gguf;
use hearth_core::model::transformer::Transformer;
use serde_json::Value;

/// `tests/golden/{dir}/{name}`, parsed.
pub fn golden(dir: &str, name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/golden").join(dir).join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A shipped model's file, opened and its header read.
pub fn open(model: &ModelEntry) -> (Gguf, std::fs::File) {
    let path = models_dir().join(model.file);
    let file =
        std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e} (run scripts/fetch-model.sh)", path.display()));
    let g = Gguf::read(&file).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (g, file)
}

/// A shipped model on the CPU with `n_ctx` positions.
pub fn load(model: &ModelEntry, n_ctx: usize) -> Transformer {
    let (g, file) = open(model);
    Transformer::load(&g, &file, n_ctx).unwrap_or_else(|e| panic!("{}: {e}", model.file))
}

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("an array of ids")
        .iter()
        .map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok()).expect("a token id"))
        .collect()
}

pub fn argmax(logits: &[f32]) -> u32 {
    logits.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best }).0
        as u32
}

/// Replays every greedy case of `greedy.json`: at each step the recorded top logits must be
/// within `tolerance` of the model's and the model's argmax must be llama.cpp's token. Steps
/// follow llama.cpp's tokens (teacher forcing), so every step compares like with like. Returns
/// the largest logit difference seen.
pub fn check_greedy(model: &mut Transformer, doc: &Value, tolerance: f32) -> f32 {
    let mut worst = 0.0f32;
    let cases = doc["cases"].as_array().expect("a \"cases\" array");
    assert!(!cases.is_empty(), "no greedy cases");
    for case in cases {
        let prompt = ids(&case["prompt_ids"]);
        let expected = ids(&case["ids"]);
        let name = case["prompt"].as_str().unwrap_or_default().chars().take(40).collect::<String>();
        let mut logits = model.forward(&prompt, 0, false).unwrap();
        let mut got = Vec::new();
        for (step, top) in case["top_logits"].as_array().unwrap().iter().enumerate() {
            for pair in top.as_array().unwrap() {
                let (id, want) = (pair[0].as_u64().unwrap() as usize, pair[1].as_f64().unwrap() as f32);
                let diff = (logits[id] - want).abs();
                worst = worst.max(diff);
                assert!(diff <= tolerance, "{name:?} step {step} token {id}: {} vs {want}", logits[id]);
            }
            got.push(argmax(&logits));
            logits = model.forward(&[expected[step]], prompt.len() + step, false).unwrap();
        }
        assert_eq!(got, expected, "greedy continuation of {name:?}");
    }
    worst
}
