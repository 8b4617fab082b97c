//! Tokenizers built from hand-made metadata: encoding rules, decoding, streaming, and every way
//! the metadata can be wrong. (The real model is checked against llama.cpp in
//! tests/tokenizer_golden.rs.)

use std::collections::BTreeMap;

use super::*;
use crate::gguf::Value;

fn strings(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| Value::String(s.to_string())).collect())
}

fn gguf(metadata: Vec<(&str, Value)>) -> Gguf {
    let metadata: BTreeMap<String, Value> = metadata.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    Gguf { version: 3, metadata, tensors: Vec::new(), alignment: 32, data_offset: 0 }
}

/// A byte-level BPE vocabulary: the 256 byte characters, a few merged words, and special tokens.
fn bpe_metadata() -> Vec<(&'static str, Value)> {
    let mut tokens: Vec<String> =
        vec!["<|endoftext|>".into(), "<|im_start|>".into(), "<|im_end|>".into(), "<x>".into()];
    tokens.extend((0..=255u8).map(|b| bytes::byte_to_char(b).to_string()));
    let merges = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld"];
    for m in merges {
        tokens.push(m.replace(' ', ""));
    }
    let mut types = vec![Value::I32(3), Value::I32(3), Value::I32(3), Value::I32(4)];
    types.resize(tokens.len(), Value::I32(1));
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    vec![
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("gpt-2".into())),
        ("tokenizer.ggml.tokens", strings(&tokens)),
        ("tokenizer.ggml.token_type", Value::Array(types)),
        ("tokenizer.ggml.merges", strings(&merges)),
        ("tokenizer.ggml.bos_token_id", Value::U32(0)),
        ("tokenizer.ggml.eos_token_id", Value::U32(0)),
    ]
}

fn bpe() -> Tokenizer {
    Tokenizer::from_gguf(&gguf(bpe_metadata())).expect("valid metadata")
}

fn texts(t: &Tokenizer, ids: &[u32]) -> Vec<String> {
    ids.iter().map(|&id| t.token_text(id).unwrap_or("?").to_string()).collect()
}

#[test]
fn bpe_merges_words_and_keeps_unmergeable_bytes() {
    let t = bpe();
    assert_eq!(texts(&t, &t.encode("hello world", false, false)), ["hello", "Ġworld"]);
    assert_eq!(texts(&t, &t.encode("hold", false, false)), ["h", "o", "ld"]);
    assert_eq!(texts(&t, &t.encode("a\nb", false, false)), ["a", "Ċ", "b"]);
    assert_eq!(t.encode("", true, true), Vec::<u32>::new());
}

#[test]
fn special_tokens_need_parse_special_unless_user_defined() {
    let t = bpe();
    let start = t.id_of("<|im_start|>").expect("present");
    let user = t.id_of("<x>").expect("present");
    let ids = t.encode("<|im_start|>hello<x>", false, true);
    assert_eq!(ids[0], start);
    assert_eq!(*ids.last().expect("non-empty"), user);
    let ids = t.encode("<|im_start|>hello<x>", false, false);
    assert!(!ids.contains(&start));
    assert_eq!(*ids.last().expect("non-empty"), user);
    assert_eq!(t.decode(&ids), "<|im_start|>hello<x>");
}

#[test]
fn bos_and_eos_follow_the_metadata() {
    let mut md = bpe_metadata();
    md.push(("tokenizer.ggml.add_bos_token", Value::Bool(true)));
    md.push(("tokenizer.ggml.add_eos_token", Value::Bool(true)));
    let t = Tokenizer::from_gguf(&gguf(md)).expect("valid");
    assert_eq!(t.encode("hello", true, false), [0, t.id_of("hello").expect("present"), 0]);
    assert_eq!(t.encode("hello", false, false), [t.id_of("hello").expect("present")]);
    // GPT-2-style BPE adds nothing by default; Llama-3-style adds BOS.
    assert!(!bpe().add_bos());
    let mut md = bpe_metadata();
    md[1].1 = Value::String("llama-bpe".into());
    assert!(Tokenizer::from_gguf(&gguf(md)).expect("valid").add_bos());
}

#[test]
fn decode_round_trips_any_text() {
    let t = bpe();
    for text in ["hello world", "Ünïcödé 日本語 🤖🔥👍🏽 \t\r\n\u{0}\u{7f}\u{a0}", "  spaces  "] {
        assert_eq!(t.decode(&t.encode(text, false, false)), text);
    }
}

#[test]
fn control_tokens_are_hidden_unless_asked_for() {
    let t = bpe();
    let ids = t.encode("<|im_start|>hello<|im_end|>", false, true);
    assert_eq!(t.decode(&ids), "hello");
    assert_eq!(t.decode_special(&ids), "<|im_start|>hello<|im_end|>");
    assert_eq!(t.token_to_piece(1, false), b"");
    assert_eq!(t.token_to_piece(1, true), b"<|im_start|>");
    // Out of range ids decode to nothing rather than panicking.
    assert_eq!(t.decode(&[u32::MAX, 99_999]), "");
    assert_eq!(t.token_text(u32::MAX), None);
}

#[test]
fn end_of_turn_prefers_im_end_and_eog_covers_the_candidates() {
    let t = bpe();
    let im_end = t.id_of("<|im_end|>").expect("present");
    assert_eq!(t.eot(), Some(im_end));
    assert!(t.is_eog(im_end));
    assert!(t.is_eog(0));
    assert!(!t.is_eog(1));
    assert!(t.is_control(1));
    assert!(!t.is_control(t.id_of("hello").expect("present")));
}

#[test]
fn stream_decoder_holds_back_a_split_emoji() {
    let t = bpe();
    // With no merges for it, "🤖" is four byte tokens.
    let ids = t.encode("a🤖b", false, false);
    assert_eq!(ids.len(), 6);
    let mut stream = StreamDecoder::new();
    let out: Vec<String> = ids.iter().map(|&id| stream.push(&t, id)).collect();
    assert_eq!(out, ["a", "", "", "", "🤖", "b"]);
    assert_eq!(stream.finish(), "");
}

#[test]
fn stream_decoder_flushes_and_replaces_like_decode() {
    let t = bpe();
    let robot = t.encode("🤖", false, false);
    let lone = t.encode("x", false, false);
    // A cut-off emoji at the end becomes one replacement character when flushed.
    let mut stream = StreamDecoder::new();
    assert_eq!(stream.push(&t, robot[0]), "");
    assert_eq!(stream.push(&t, robot[1]), "");
    assert_eq!(stream.finish(), "\u{FFFD}");
    // A sequence broken off by another character is replaced at once, as `decode` does.
    let ids = [robot[0], robot[1], lone[0], robot[0], robot[1], robot[2], robot[3]];
    let mut stream = StreamDecoder::new();
    let mut joined: String = ids.iter().map(|&id| stream.push(&t, id)).collect();
    joined.push_str(&stream.finish());
    assert_eq!(joined, t.decode(&ids));
    assert_eq!(joined, "\u{FFFD}x🤖");
    // Control tokens stay hidden unless the decoder is made to show them.
    let mut special = StreamDecoder::with_special();
    assert_eq!(special.push(&t, 2), "<|im_end|>");
    assert_eq!(StreamDecoder::new().push(&t, 2), "");
}

/// A SentencePiece vocabulary: unknown, BOS, EOS, byte tokens, pieces with scores.
fn spm_metadata() -> Vec<(&'static str, Value)> {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0f32; 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    for (piece, score) in
        [("▁", -1.0), ("h", -2.0), ("i", -2.0), ("▁h", -3.0), ("▁hi", -4.0), ("x", -2.0), ("hi", -5.0)]
    {
        tokens.push(piece.into());
        types.push(1);
        scores.push(score);
    }
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    vec![
        ("tokenizer.ggml.model", Value::String("llama".into())),
        ("tokenizer.ggml.tokens", strings(&tokens)),
        ("tokenizer.ggml.token_type", Value::Array(types.into_iter().map(Value::I32).collect())),
        ("tokenizer.ggml.scores", Value::Array(scores.into_iter().map(Value::F32).collect())),
    ]
}

#[test]
fn spm_prefixes_a_space_adds_bos_and_falls_back_to_bytes() {
    let t = Tokenizer::from_gguf(&gguf(spm_metadata())).expect("valid");
    assert_eq!(t.kind(), TokenizerKind::Spm);
    assert_eq!((t.bos(), t.eos(), t.unk()), (Some(1), Some(2), Some(0)));
    let ids = t.encode("hi hi é", true, false);
    let e9 = [t.id_of("<0xC3>").expect("present"), t.id_of("<0xA9>").expect("present")];
    let expected = [
        1,
        t.id_of("▁hi").expect("present"),
        t.id_of("▁hi").expect("present"),
        t.id_of("▁").expect("present"),
        e9[0],
        e9[1],
    ];
    assert_eq!(ids, expected);
    // The space the encoder prefixed is dropped again, and byte tokens join into "é".
    assert_eq!(t.decode(&ids[1..]), "hi hi é");
    // Control tokens typed as text merge back into themselves only if asked to parse them.
    assert_eq!(t.encode("<s>x", false, true), [1, t.id_of("▁").expect("present"), t.id_of("x").expect("present")]);
}

#[test]
fn spm_space_prefix_can_be_turned_off() {
    let mut md = spm_metadata();
    md.push(("tokenizer.ggml.add_space_prefix", Value::Bool(false)));
    let t = Tokenizer::from_gguf(&gguf(md)).expect("valid");
    assert_eq!(t.encode("hi", false, false), [t.id_of("hi").expect("present")]);
}

fn error(metadata: Vec<(&'static str, Value)>) -> TokenizerError {
    Tokenizer::from_gguf(&gguf(metadata)).expect_err("metadata is bad")
}

fn with(key: &'static str, v: Value) -> Vec<(&'static str, Value)> {
    let mut md: Vec<_> = bpe_metadata().into_iter().filter(|(k, _)| *k != key).collect();
    md.push((key, v));
    md
}

fn without(key: &str) -> Vec<(&'static str, Value)> {
    bpe_metadata().into_iter().filter(|(k, _)| *k != key).collect()
}

#[test]
fn bad_metadata_is_an_error_that_names_the_value() {
    let cases: Vec<(TokenizerError, &str)> = vec![
        (error(without("tokenizer.ggml.model")), "tokenizer.ggml.model"),
        (error(with("tokenizer.ggml.model", Value::String("bert".into()))), "\"bert\""),
        (error(with("tokenizer.ggml.model", Value::U32(2))), "u32"),
        (error(with("tokenizer.ggml.pre", Value::String("kimi-k2".into()))), "\"kimi-k2\""),
        (error(with("tokenizer.ggml.pre", Value::String("no-such-pre".into()))), "\"no-such-pre\""),
        (error(without("tokenizer.ggml.tokens")), "tokenizer.ggml.tokens"),
        (error(with("tokenizer.ggml.tokens", Value::Array(vec![]))), "empty"),
        (error(with("tokenizer.ggml.tokens", Value::Array(vec![Value::U8(1)]))), "element #0"),
        (error(with("tokenizer.ggml.tokens", strings(&["a", "b", "a"]))), "\"a\""),
        (error(with("tokenizer.ggml.token_type", Value::Array(vec![Value::I32(1)]))), "1 entries"),
        (error(without("tokenizer.ggml.merges")), "tokenizer.ggml.merges"),
        (error(with("tokenizer.ggml.merges", strings(&["h e", "nospace"]))), "\"nospace\""),
        (error(with("tokenizer.ggml.merges", strings(&["h zz"]))), "\"zz\""),
        (error(with("tokenizer.ggml.merges", strings(&["h o"]))), "\"ho\""),
        (error(with("tokenizer.ggml.bos_token_id", Value::U32(1_000_000))), "1000000"),
        (error(with("tokenizer.ggml.eos_token_id", Value::I32(-1))), "i32"),
        (error(with("tokenizer.ggml.add_bos_token", Value::U8(1))), "tokenizer.ggml.add_bos_token"),
    ];
    for (err, needle) in cases {
        let message = err.to_string();
        assert!(message.contains(needle), "{message:?} should mention {needle}");
    }
    assert!(matches!(
        error(with("tokenizer.ggml.merges", strings(&["h zz"]))),
        TokenizerError::MergeUnknownToken { index: 0, .. }
    ));
    let mut spm: Vec<_> = spm_metadata().into_iter().filter(|(k, _)| *k != "tokenizer.ggml.scores").collect();
    spm.push(("tokenizer.ggml.scores", Value::Array(vec![Value::F32(0.0)])));
    assert!(matches!(error(spm), TokenizerError::LengthMismatch { key: "tokenizer.ggml.scores", len: 1, .. }));
}

#[test]
fn a_tokenizer_is_shareable_across_threads() {
    fn check<T: Send + Sync>() {}
    check::<Tokenizer>();
    check::<StreamDecoder>();
}
