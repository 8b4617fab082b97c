//! The tokenizer of the real default model against llama.cpp's own output.
//!
//! tests/golden/smollm2-135m-q4_1/tokens.json holds `llama_tokenize(text, add_special,
//! parse_special)` for a spread of texts (ASCII, whitespace runs, CJK, emoji, RTL scripts, code,
//! contractions, numbers, ChatML markers), and greedy.json holds rendered prompts with their ids
//! and generated ids with their text, all from llama.cpp (llama-cpp-python 0.3.36). Every case
//! must match exactly.

use std::path::PathBuf;
use std::time::Instant;

use hearth_api::catalog::{DEFAULT_MODEL, models_dir};
use hearth_core::gguf::Gguf;
use hearth_core::tokenizer::{StreamDecoder, Tokenizer, TokenizerKind};
use serde_json::Value;

fn golden(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/smollm2-135m-q4_1").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn tokenizer() -> Tokenizer {
    let path = models_dir().join(DEFAULT_MODEL.file);
    let file = std::fs::File::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/fetch-model.sh to get the default model)", path.display()));
    let gguf = Gguf::read(&file).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Tokenizer::from_gguf(&gguf).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("an array of ids")
        .iter()
        .map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok()).expect("a token id"))
        .collect()
}

fn field<'v>(case: &'v Value, key: &str) -> &'v Value {
    case.get(key).unwrap_or_else(|| panic!("case without {key:?}: {case}"))
}

fn cases(doc: &Value) -> &[Value] {
    let cases = doc.get("cases").and_then(Value::as_array).expect("a \"cases\" array");
    assert!(!cases.is_empty(), "no cases");
    cases
}

#[test]
fn the_default_model_has_the_expected_vocabulary() {
    let t = tokenizer();
    assert_eq!(t.kind(), TokenizerKind::Bpe);
    assert_eq!(t.pre(), "smollm");
    assert_eq!(t.vocab_size(), 49152);
    assert_eq!(t.bos(), Some(1));
    assert_eq!(t.eos(), Some(2));
    assert_eq!(t.eot(), t.id_of("<|im_end|>"));
    assert_eq!(t.eot(), Some(2));
    assert!(!t.add_bos());
    // llama.cpp's end-of-generation set for this model: <|endoftext|>, <|im_end|>, <reponame>.
    assert_eq!(t.eog_tokens(), [0, 2, 4]);
    assert!(t.is_control(1) && t.is_control(16) && !t.is_control(17));
    assert_eq!(t.id_of("<|im_start|>"), Some(1));
    assert_eq!(t.token_text(198), Some("Ċ"));
}

#[test]
fn every_tokens_case_matches_llama_cpp() {
    let t = tokenizer();
    let doc = golden("tokens.json");
    let mut failures = Vec::new();
    let cases = cases(&doc);
    for case in cases {
        let text = field(case, "text").as_str().expect("text");
        let add_special = field(case, "add_special").as_bool().expect("add_special");
        let parse_special = field(case, "parse_special").as_bool().expect("parse_special");
        let want = ids(field(case, "ids"));
        let got = t.encode(text, add_special, parse_special);
        if got != want {
            failures.push(format!(
                "{text:?} add_special={add_special} parse_special={parse_special}\n  want {want:?}\n  got  {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn every_greedy_prompt_encodes_like_llama_cpp() {
    let t = tokenizer();
    let doc = golden("greedy.json");
    for case in cases(&doc) {
        let rendered = field(case, "rendered").as_str().expect("rendered");
        assert_eq!(t.encode(rendered, true, true), ids(field(case, "prompt_ids")), "prompt {rendered:?}");
    }
}

#[test]
fn every_greedy_generation_decodes_to_its_text() {
    let t = tokenizer();
    let doc = golden("greedy.json");
    for case in cases(&doc) {
        let generated = ids(field(case, "ids"));
        let text = field(case, "text").as_str().expect("text");
        assert_eq!(t.decode(&generated), text);
        // Streaming one id at a time gives the same text.
        let mut stream = StreamDecoder::new();
        let mut streamed: String = generated.iter().map(|&id| stream.push(&t, id)).collect();
        streamed.push_str(&stream.finish());
        assert_eq!(streamed, text);
    }
}

#[test]
fn decode_inverts_encode_on_the_golden_texts() {
    let t = tokenizer();
    let doc = golden("tokens.json");
    for case in cases(&doc) {
        let text = field(case, "text").as_str().expect("text");
        assert_eq!(t.decode(&t.encode(text, false, false)), text);
        assert_eq!(t.decode_special(&t.encode(text, true, true)), text);
    }
}

#[test]
fn a_200_kb_text_encodes_in_reasonable_time() {
    let t = tokenizer();
    let unit = "The quick brown fox jumps over the lazy dog; 1234567890. Ünïcödé 日本語 🤖\n\t  <|im_start|>x ";
    let mut text = String::new();
    while text.len() < 200_000 {
        text.push_str(unit);
    }
    // Plus one 50 KB word with no break in it, the worst case for merging.
    text.push_str(&"ab".repeat(25_000));
    // Tests do not time things; quadratic merging would show as a test that runs for hours.
    let start = Instant::now();
    let ids = t.encode(&text, true, true);
    println!("250 KB encoded in {:?}", start.elapsed());
    assert!(ids.len() > 40_000, "{} tokens", ids.len());
    assert_eq!(t.decode_special(&ids), text);
}

/// Found by fuzzing (fuzz/fuzz_targets/tokenizer.rs): SmolLM2's vocabulary has no token for
/// the bytes 0x04, 0x06, 0x13, 0x14, 0x16 and 0x1d. llama.cpp drops such bytes (its BPE
/// session skips a byte whose text has no token); so does Hearth, without panicking.
#[test]
fn bytes_without_a_token_are_dropped_like_llama_cpp() {
    let t = tokenizer();
    for byte in [0x04u8, 0x06, 0x13, 0x14, 0x16, 0x1d] {
        let text = format!("lens of{}glass", byte as char);
        let ids = t.encode(&text, false, false);
        assert_eq!(t.decode(&ids), text.replace(byte as char, ""), "byte {byte:#04x}");
    }
}
