//! The GGUF reader on files written here byte by byte, then broken in every way the header can
//! be broken; and on the real default model.

use hearth_core::gguf::{Gguf, GgufError, SharedBytes, TensorData, Value};
use hearth_core::kernels::quant::QuantFormat;

/// A minimal GGUF writer: enough to make valid files and then corrupt them.
#[derive(Default)]
struct Writer {
    kv: Vec<(String, u32, Vec<u8>)>,
    tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
    version: u32,
}

fn string(s: &str) -> Vec<u8> {
    [(s.len() as u64).to_le_bytes().to_vec(), s.as_bytes().to_vec()].concat()
}

impl Writer {
    fn new() -> Self {
        Self { version: 3, ..Default::default() }
    }
    fn kv(mut self, key: &str, type_id: u32, value: Vec<u8>) -> Self {
        self.kv.push((key.into(), type_id, value));
        self
    }
    fn kv_str(self, key: &str, value: &str) -> Self {
        self.kv(key, 8, string(value))
    }
    fn tensor(mut self, name: &str, dims: &[u64], type_id: u32, data: Vec<u8>) -> Self {
        self.tensors.push((name.into(), dims.to_vec(), type_id, data));
        self
    }
    fn bytes(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.kv.len() as u64).to_le_bytes());
        for (k, t, v) in &self.kv {
            out.extend(string(k));
            out.extend(t.to_le_bytes());
            out.extend(v);
        }
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for (name, dims, t, data) in &self.tensors {
            out.extend(string(name));
            out.extend((dims.len() as u32).to_le_bytes());
            dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
            out.extend(t.to_le_bytes());
            out.extend(offset.to_le_bytes());
            offsets.push(offset);
            offset = (offset + data.len() as u64).div_ceil(32) * 32;
        }
        while !out.len().is_multiple_of(32) {
            out.push(0);
        }
        let data_start = out.len();
        for ((_, _, _, data), off) in self.tensors.iter().zip(offsets) {
            out.resize(data_start + off as usize, 0);
            out.extend(data);
        }
        out
    }
}

const F32: u32 = 0;
const Q4_0: u32 = 2;
const Q4_1: u32 = 3;

fn sample() -> Writer {
    let tokens =
        [8u32.to_le_bytes().to_vec(), 3u64.to_le_bytes().to_vec(), string("a"), string("é"), string("日本")].concat();
    Writer::new()
        .kv_str("general.architecture", "llama")
        .kv("llama.block_count", 4, 30u32.to_le_bytes().to_vec())
        .kv("llama.rope.freq_base", 6, 10000f32.to_le_bytes().to_vec())
        .kv("tokenizer.ggml.tokens", 9, tokens)
        .kv("tokenizer.ggml.add_bos_token", 7, vec![1])
        .kv("some.i64", 11, (-5i64).to_le_bytes().to_vec())
        .tensor("token_embd.weight", &[64, 3], Q4_1, vec![7; 3 * 40])
        .tensor("output_norm.weight", &[64], F32, vec![1; 256])
}

fn err(bytes: &[u8]) -> GgufError {
    Gguf::read(bytes).expect_err("a corrupt file must be refused")
}

#[test]
fn reads_metadata_and_tensor_index() {
    let bytes = sample().bytes();
    let g = Gguf::read(bytes.as_slice()).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(g.get_u64("llama.block_count").unwrap(), 30);
    assert_eq!(g.get_f64("llama.rope.freq_base").unwrap(), 10000.0);
    assert_eq!(g.get("tokenizer.ggml.add_bos_token").unwrap(), &Value::Bool(true));
    assert_eq!(g.get("some.i64").unwrap(), &Value::I64(-5));
    let Value::Array(tokens) = g.get("tokenizer.ggml.tokens").unwrap() else { panic!("an array") };
    assert_eq!(tokens, &[Value::String("a".into()), Value::String("é".into()), Value::String("日本".into())]);

    let embd = g.tensor("token_embd.weight").unwrap();
    assert_eq!(
        (embd.dims.as_slice(), embd.format, embd.size, embd.elements()),
        (&[64, 3][..], QuantFormat::Q4_1, 120, 192)
    );
    assert_eq!(g.read_tensor(bytes.as_slice(), embd).unwrap(), vec![7; 120]);
    let norm = g.tensor("output_norm.weight").unwrap();
    assert_eq!(norm.offset, 128, "aligned to 32 after 120 bytes");
    assert_eq!(g.read_tensor(bytes.as_slice(), norm).unwrap(), vec![1; 256]);
    assert_eq!(g.data_offset % 32, 0);
}

#[test]
fn tensors_of_a_file_in_memory_point_into_it() {
    let bytes = SharedBytes::new(sample().bytes());
    let g = Gguf::read(&bytes).unwrap();
    let norm = g.tensor("output_norm.weight").unwrap();
    let data = g.tensor_data(&bytes, norm).unwrap();
    assert!(matches!(data, TensorData::Shared { .. }), "no copy of the weights");
    assert_eq!(&*data, &[1; 256][..]);
    // A file on disk is read into a buffer of its own.
    let mut path = std::env::temp_dir();
    path.push(format!("hearth-gguf-{}.gguf", std::process::id()));
    std::fs::write(&path, sample().bytes()).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let owned = g.tensor_data(&file, norm).unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(matches!(owned, TensorData::Owned(_)));
    assert_eq!(&*owned, &*data);
}

#[test]
fn version_2_is_read_too() {
    let mut w = sample();
    w.version = 2;
    assert_eq!(Gguf::read(w.bytes().as_slice()).unwrap().version, 2);
}

#[test]
fn wrong_magic_version_and_endianness_are_named() {
    let mut bytes = sample().bytes();
    bytes[..4].copy_from_slice(b"GGML");
    assert!(matches!(err(&bytes), GgufError::BadMagic(m) if &m == b"GGML"));
    let mut w = sample();
    w.version = 1;
    assert!(err(&w.bytes()).to_string().contains("version 1"));
    w.version = 3u32.swap_bytes();
    assert!(matches!(err(&w.bytes()), GgufError::BigEndian));
    assert!(matches!(err(b""), GgufError::Truncated { .. }));
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let bytes = sample().bytes();
    for len in 0..bytes.len() {
        match Gguf::read(&bytes[..len]) {
            Err(GgufError::Truncated { .. } | GgufError::TooLarge { .. } | GgufError::TensorOutOfBounds { .. }) => {}
            other => panic!("truncated to {len} bytes: {other:?}"),
        }
    }
}

#[test]
fn lying_counts_and_lengths_are_refused_before_allocating() {
    // Tensor count of 2^60.
    let mut bytes = sample().bytes();
    bytes[8..16].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(matches!(err(&bytes), GgufError::TooLarge { .. }), "{}", err(&bytes));
    // Metadata count past the file.
    let mut bytes = sample().bytes();
    bytes[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(err(&bytes), GgufError::TooLarge { .. }));
    // A key length of 2^63.
    let mut bytes = sample().bytes();
    bytes[24..32].copy_from_slice(&(1u64 << 63).to_le_bytes());
    assert!(err(&bytes).to_string().contains("length of metadata key #0"), "{}", err(&bytes));
    // An array claiming 2^40 strings.
    let huge = [8u32.to_le_bytes().to_vec(), (1u64 << 40).to_le_bytes().to_vec()].concat();
    let bytes = Writer::new().kv("tokenizer.ggml.tokens", 9, huge).bytes();
    assert!(err(&bytes).to_string().contains("tokenizer.ggml.tokens"));
}

#[test]
fn bad_values_are_named() {
    let bytes = Writer::new().kv("x", 13, vec![0; 8]).bytes();
    assert!(matches!(err(&bytes), GgufError::BadValueType { type_id: 13, .. }));
    let nested = [9u32.to_le_bytes().to_vec(), 1u64.to_le_bytes().to_vec()].concat();
    assert!(matches!(err(&Writer::new().kv("n", 9, nested).bytes()), GgufError::NestedArray { .. }));
    let bad_utf8 = [2u64.to_le_bytes().to_vec(), vec![0xff, 0xfe]].concat();
    assert!(matches!(err(&Writer::new().kv("s", 8, bad_utf8).bytes()), GgufError::InvalidUtf8 { .. }));
    let dup = Writer::new().kv_str("a", "1").kv_str("a", "2").bytes();
    assert!(matches!(err(&dup), GgufError::DuplicateKey(k) if k == "a"));
    let align = Writer::new().kv("general.alignment", 4, 24u32.to_le_bytes().to_vec()).bytes();
    assert!(matches!(err(&align), GgufError::BadAlignment(24)));
}

#[test]
fn bad_tensors_are_named() {
    let t = |dims: &[u64], type_id, data| Writer::new().tensor("t", dims, type_id, data).bytes();
    assert!(err(&t(&[32], 77, vec![0; 128])).to_string().contains("unknown type id 77"));
    // Row length that is not whole blocks; too many dimensions; dims whose product overflows.
    assert!(matches!(err(&t(&[33], Q4_0, vec![0; 18])), GgufError::BadShape { .. }));
    assert!(matches!(err(&t(&[1, 1, 1, 1, 1], F32, vec![0; 4])), GgufError::TooManyDims { .. }));
    assert!(matches!(err(&t(&[1 << 32, 1 << 32], F32, vec![0; 4])), GgufError::BadShape { .. }));
    // A shape larger than the data in the file.
    let e = err(&t(&[32, 1000], F32, vec![0; 128]));
    assert!(matches!(e, GgufError::TensorOutOfBounds { .. }), "{e}");
    let dup = Writer::new().tensor("t", &[32], F32, vec![0; 128]).tensor("t", &[32], F32, vec![0; 128]);
    assert!(matches!(err(&dup.bytes()), GgufError::DuplicateTensor(_)));
}

#[test]
fn typed_getters_say_what_is_wrong() {
    let g = Gguf::read(sample().bytes().as_slice()).unwrap();
    let e = g.get_u64("general.architecture").unwrap_err().to_string();
    assert!(e.contains("is string, expected an unsigned integer"), "{e}");
    assert!(matches!(g.get_str("llama.nope"), Err(GgufError::MissingKey(_))));
}

#[test]
fn reads_the_default_model() {
    let path = hearth_api::catalog::models_dir().join(hearth_api::catalog::DEFAULT_MODEL.file);
    let file = std::fs::File::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/fetch-model.sh fetches it)", path.display()));
    let g = Gguf::read(&file).unwrap();
    assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(g.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
    assert_eq!(g.get_str("tokenizer.ggml.pre").unwrap(), "smollm");
    assert_eq!(g.get_u64("llama.block_count").unwrap(), 30);
    assert_eq!(g.get_u64("llama.embedding_length").unwrap(), 576);
    assert!(g.get_str("tokenizer.chat_template").unwrap().contains("<|im_start|>"));
    let Value::Array(tokens) = g.get("tokenizer.ggml.tokens").unwrap() else { panic!("tokens") };
    assert_eq!(tokens.len(), 49152);
    let embd = g.tensor("token_embd.weight").unwrap();
    assert_eq!((embd.dims.as_slice(), embd.format), (&[576, 49152][..], QuantFormat::Q8_0));
    let formats: std::collections::BTreeSet<_> = g.tensors.iter().map(|t| t.format.name()).collect();
    assert_eq!(formats.into_iter().collect::<Vec<_>>(), ["F32", "Q4_1", "Q8_0"]);
    // Every tensor ends within the file.
    let end = g.tensors.iter().map(|t| g.data_offset + t.offset + t.size).max().unwrap();
    assert!(end <= file.metadata().unwrap().len());
}
