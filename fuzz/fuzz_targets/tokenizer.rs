//! Any text through the default model's tokenizer: encoding never panics, every id is in the
//! vocabulary, and byte-level BPE decodes back to the text (special tokens left as text) less
//! the characters the vocabulary cannot spell at all (llama.cpp drops those too; see
//! core-wasm/tests/tokenizer_golden.rs); streaming decode agrees with whole decode.
#![no_main]

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use hearth_api::catalog::{DEFAULT_MODEL, models_dir};
use hearth_core::gguf::Gguf;
use hearth_core::tokenizer::{StreamDecoder, Tokenizer};
use libfuzzer_sys::fuzz_target;

fn tokenizer() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let path = models_dir().join(DEFAULT_MODEL.file);
        let file = std::fs::File::open(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run scripts/fetch-model.sh)", path.display()));
        Tokenizer::from_gguf(&Gguf::read(&file).expect("the default model's header")).expect("its tokenizer")
    })
}

/// Whether `c` on its own survives encoding and decoding.
fn spellable(t: &Tokenizer, c: char) -> bool {
    static CACHE: OnceLock<Mutex<HashMap<char, bool>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut cache = cache.lock().expect("the cache");
    *cache.entry(c).or_insert_with(|| t.decode(&t.encode(&c.to_string(), false, false)) == c.to_string())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let t = tokenizer();
    let plain = t.encode(text, false, false);
    assert!(plain.iter().all(|&id| (id as usize) < t.vocab_size()));
    let expected: String = text.chars().filter(|&c| spellable(t, c)).collect();
    assert_eq!(t.decode(&plain), expected, "round trip of {text:?}");
    let mut stream = StreamDecoder::new();
    let mut streamed: String = plain.iter().map(|&id| stream.push(t, id)).collect();
    streamed.push_str(&stream.finish());
    assert_eq!(streamed, expected, "streamed round trip of {text:?}");
    let special = t.encode(text, true, true);
    assert!(special.iter().all(|&id| (id as usize) < t.vocab_size()));
});
