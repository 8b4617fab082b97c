//! Tiny synthetic models, written byte by byte as GGUF files: every architecture Hearth runs
//! (llama, qwen2, gemma3) with its 2-D weights in any tensor format, so each format's kernels
//! are tested end to end against llama.cpp without downloading a model per format.
//! Deterministic: the same (architecture, format) always gives the same bytes, which
//! scripts/make-synthetic-goldens.sh writes to files for llama.cpp and
//! tests/synthetic_models.rs checks by their SHA-256.
//!
//! Shape: width 256 (K-quant rows are whole 256-value blocks), 4 query heads of 64, an MLP of
//! 512, a vocabulary of 300 (SentencePiece: `<unk>`, `<s>`, `</s>`, the 256 byte tokens,
//! then plain words), 128 positions. llama and qwen2: 2 layers, 2 kv heads, their own
//! `output.weight`; qwen2 with q/k/v biases. gemma3: 3 layers, 1 kv head, key and value
//! length 64, output tied to the embeddings, a sliding window of 4 positions in every other
//! layer (pattern 2: layers 0 and 2 local with RoPE base 10 000, layer 1 global with 10⁶).
//!
//! Weights are random bytes from a splitmix64 stream, with each block's scale fields set so
//! the weights have a standard deviation of about `gain / √cols`: activations stay O(1), the
//! logits a few units apart. Norm weights lie in 0.8..1.2 (gemma3's final norm in 3..5) and
//! biases in ±0.5, in F32.
//! Included by `#[path]` from the tests and from examples/synthetic_models.rs.
#![allow(dead_code)] // each includer uses part of it

use half::f16;
use hearth_core::kernels::quant::{QuantFormat, f32_to_bf16};

/// The architectures, as `general.architecture` names them.
pub const ARCHS: [&str; 3] = ["llama", "qwen2", "gemma3"];

/// The weight formats Hearth computes with.
pub const FORMATS: [QuantFormat; 11] = [
    QuantFormat::F32,
    QuantFormat::F16,
    QuantFormat::BF16,
    QuantFormat::Q4_0,
    QuantFormat::Q4_1,
    QuantFormat::Q5_0,
    QuantFormat::Q5_1,
    QuantFormat::Q8_0,
    QuantFormat::Q4_K,
    QuantFormat::Q5_K,
    QuantFormat::Q6_K,
];

pub const DIM: usize = 256;
pub const N_HEADS: usize = 4;
pub const HEAD_DIM: usize = 64;
pub const FFN_DIM: usize = 512;
pub const VOCAB: usize = 300;
pub const CONTEXT: usize = 128;
/// gemma3's sliding window and the period of its global layers.
pub const WINDOW: usize = 4;
pub const WINDOW_PATTERN: usize = 2;

/// The shape of `arch`'s synthetic model.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub n_layers: usize,
    pub n_kv_heads: usize,
    pub rms_eps: f32,
    pub rope_base: f32,
    /// A separate `output.weight` (else tied to `token_embd.weight`).
    pub output: bool,
    pub qkv_bias: bool,
    /// gemma3's q/k norms and post-attention/MLP norms.
    pub gemma: bool,
}

pub fn shape(arch: &str) -> Shape {
    match arch {
        "gemma3" => Shape {
            n_layers: 3,
            n_kv_heads: 1,
            rms_eps: 1e-6,
            rope_base: 1e6,
            output: false,
            qkv_bias: false,
            gemma: true,
        },
        _ => Shape {
            n_layers: 2,
            n_kv_heads: 2,
            rms_eps: 1e-5,
            rope_base: 1e4,
            output: true,
            qkv_bias: arch == "qwen2",
            gemma: false,
        },
    }
}

/// The GGUF file of `arch`'s synthetic model with every 2-D weight in `format`.
pub fn model_bytes(arch: &str, format: QuantFormat) -> Vec<u8> {
    model_bytes_with(arch, format, arch, None)
}

/// [`model_bytes`] with `general.architecture` (and the `{arch}.*` keys) saying `declared`,
/// and optionally one tensor stored in another format (random bytes if its scales are not
/// known here): files that must be refused.
pub fn model_bytes_with(
    arch: &str,
    format: QuantFormat,
    declared: &str,
    exception: Option<(&str, QuantFormat)>,
) -> Vec<u8> {
    let s = shape(arch);
    let kv_dim = s.n_kv_heads * HEAD_DIM;
    let q_dim = N_HEADS * HEAD_DIM;
    let mut w = Writer::default();

    // Metadata.
    let key = |k: &str| format!("{declared}.{k}");
    w.kv_str("general.architecture", declared);
    w.kv_str("general.name", &format!("hearth-synthetic-{arch}-{format}"));
    w.kv_u32(&key("context_length"), CONTEXT as u32);
    w.kv_u32(&key("embedding_length"), DIM as u32);
    w.kv_u32(&key("block_count"), s.n_layers as u32);
    w.kv_u32(&key("feed_forward_length"), FFN_DIM as u32);
    w.kv_u32(&key("attention.head_count"), N_HEADS as u32);
    w.kv_u32(&key("attention.head_count_kv"), s.n_kv_heads as u32);
    w.kv_f32(&key("attention.layer_norm_rms_epsilon"), s.rms_eps);
    w.kv_f32(&key("rope.freq_base"), s.rope_base);
    w.kv_u32(&key("rope.dimension_count"), HEAD_DIM as u32);
    if s.gemma {
        w.kv_u32(&key("attention.key_length"), HEAD_DIM as u32);
        w.kv_u32(&key("attention.value_length"), HEAD_DIM as u32);
        w.kv_u32(&key("attention.sliding_window"), WINDOW as u32);
        w.kv_u32(&key("attention.sliding_window_pattern"), WINDOW_PATTERN as u32);
        w.kv_f32(&key("rope.freq_base_swa"), 1e4);
    }
    let vocab = vocabulary();
    w.kv_str("tokenizer.ggml.model", "llama");
    w.kv_array("tokenizer.ggml.tokens", 8, vocab.iter().map(|(text, _, _)| string(text)).collect());
    w.kv_array("tokenizer.ggml.scores", 6, vocab.iter().map(|(_, score, _)| score.to_le_bytes().to_vec()).collect());
    w.kv_array("tokenizer.ggml.token_type", 5, vocab.iter().map(|(_, _, kind)| kind.to_le_bytes().to_vec()).collect());
    w.kv_u32("tokenizer.ggml.unknown_token_id", 0);
    w.kv_u32("tokenizer.ggml.bos_token_id", 1);
    w.kv_u32("tokenizer.ggml.eos_token_id", 2);
    w.kv("tokenizer.ggml.add_bos_token", 7, vec![1]);
    w.kv("tokenizer.ggml.add_eos_token", 7, vec![0]);

    // Tensors.
    let format_of = |name: &str| match exception {
        Some((n, f)) if n == name => f,
        _ => format,
    };
    let seed = |name: &str, format: Option<QuantFormat>| {
        let f = format.map_or(u64::MAX, |f| u64::from(f.ggml_type()));
        fnv1a(format!("{arch}/{name}").as_bytes()) ^ f.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    };
    let matrix = |w: &mut Writer, name: &str, cols: usize, rows: usize, gain: f32| {
        let f = format_of(name);
        let mut rng = Rng(seed(name, Some(f)));
        let data = random_matrix(&mut rng, f, rows, cols, gain / (cols as f32).sqrt());
        w.tensor(name, &[cols as u64, rows as u64], f.ggml_type(), data);
    };
    let vector = |w: &mut Writer, name: &str, len: usize, lo: f32, hi: f32| {
        let mut rng = Rng(seed(name, None));
        let data = (0..len).flat_map(|_| (lo + (hi - lo) * rng.unit()).to_le_bytes()).collect();
        w.tensor(name, &[len as u64], QuantFormat::F32.ggml_type(), data);
    };
    // The output head has 4× the gain, so the logits spread over a few units. Where it is
    // tied to the embeddings (gemma3, which scales them by √dim), the embeddings get ¼ and
    // the final norm 4×, as Gemma's do: large embeddings would outweigh everything the layers
    // add to the residual, making each position's own token its top logit.
    matrix(&mut w, "token_embd.weight", DIM, VOCAB, if s.output { 4.0 } else { 0.25 });
    match s.output {
        true => vector(&mut w, "output_norm.weight", DIM, 0.8, 1.2),
        false => vector(&mut w, "output_norm.weight", DIM, 3.0, 5.0),
    }
    if s.output {
        matrix(&mut w, "output.weight", DIM, VOCAB, 4.0);
    }
    for l in 0..s.n_layers {
        let n = |t: &str| format!("blk.{l}.{t}");
        vector(&mut w, &n("attn_norm.weight"), DIM, 0.8, 1.2);
        matrix(&mut w, &n("attn_q.weight"), DIM, q_dim, 2.0);
        matrix(&mut w, &n("attn_k.weight"), DIM, kv_dim, 2.0);
        matrix(&mut w, &n("attn_v.weight"), DIM, kv_dim, 1.0);
        if s.qkv_bias {
            vector(&mut w, &n("attn_q.bias"), q_dim, -0.5, 0.5);
            vector(&mut w, &n("attn_k.bias"), kv_dim, -0.5, 0.5);
            vector(&mut w, &n("attn_v.bias"), kv_dim, -0.5, 0.5);
        }
        if s.gemma {
            vector(&mut w, &n("attn_q_norm.weight"), HEAD_DIM, 0.8, 1.2);
            vector(&mut w, &n("attn_k_norm.weight"), HEAD_DIM, 0.8, 1.2);
        }
        matrix(&mut w, &n("attn_output.weight"), q_dim, DIM, 1.0);
        if s.gemma {
            vector(&mut w, &n("post_attention_norm.weight"), DIM, 0.8, 1.2);
        }
        vector(&mut w, &n("ffn_norm.weight"), DIM, 0.8, 1.2);
        matrix(&mut w, &n("ffn_gate.weight"), DIM, FFN_DIM, 1.0);
        matrix(&mut w, &n("ffn_up.weight"), DIM, FFN_DIM, 1.0);
        matrix(&mut w, &n("ffn_down.weight"), FFN_DIM, DIM, 1.0);
        if s.gemma {
            vector(&mut w, &n("post_ffw_norm.weight"), DIM, 0.8, 1.2);
        }
    }
    w.bytes()
}

/// (text, score, token type) of each token: `<unk>` (type 2), `<s>` and `</s>` (control, 3),
/// the byte tokens `<0x00>`..`<0xFF>` (6), then words `▁a`, `▁b`, ... (normal, 1).
pub fn vocabulary() -> Vec<(String, f32, i32)> {
    let mut v = vec![("<unk>".to_string(), 0.0, 2), ("<s>".to_string(), 0.0, 3), ("</s>".to_string(), 0.0, 3)];
    v.extend((0..=255u8).map(|b| (format!("<0x{b:02X}>"), 0.0, 6)));
    let letters = b"abcdefghijklmnopqrstuvwxyz";
    let mut i = 0;
    while v.len() < VOCAB {
        let word = match i < 26 {
            true => format!("\u{2581}{}", letters[i] as char),
            false => format!("\u{2581}{}{}", letters[(i - 26) / 26] as char, letters[(i - 26) % 26] as char),
        };
        v.push((word, -(i as f32) - 1.0, 1));
        i += 1;
    }
    v
}

/// `rows` rows of `cols` values in `format`, standard deviation about `std`.
fn random_matrix(rng: &mut Rng, format: QuantFormat, rows: usize, cols: usize, std: f32) -> Vec<u8> {
    let n = rows * cols;
    // Uniform in ±√3·std has standard deviation std.
    let mut value = || (2.0 * rng.unit() - 1.0) * 3f32.sqrt() * std;
    match format {
        QuantFormat::F32 => return (0..n).flat_map(|_| value().to_le_bytes()).collect(),
        QuantFormat::F16 => return (0..n).flat_map(|_| f16::from_f32(value()).to_le_bytes()).collect(),
        QuantFormat::BF16 => return (0..n).flat_map(|_| f32_to_bf16(value()).to_le_bytes()).collect(),
        _ => {}
    }
    let (block_size, block_bytes) = (format.block_size(), format.block_bytes());
    assert!(cols.is_multiple_of(block_size), "{format} rows are whole blocks of {block_size}");
    let mut out = vec![0u8; n / block_size * block_bytes];
    rng.fill(&mut out);
    for block in out.chunks_exact_mut(block_bytes) {
        // A scale per block, 0.5..1.5 times the one that gives `std`.
        let jitter = 0.5 + rng.unit();
        // Standard deviation of the block's values per unit of `d` (random bytes: uniform
        // quants, and for the K-quants uniform 6-bit sub-block scales and mins), and the
        // mean of the unsigned quants (which `m` or `dmin` cancels roughly).
        let set =
            |block: &mut [u8], at: usize, v: f32| block[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
        match format {
            // x = d (q - 8), q 0..16: σ = 4.61 d.
            QuantFormat::Q4_0 => set(block, 0, jitter * std / 4.61),
            // x = d q + m.
            QuantFormat::Q4_1 => {
                let d = jitter * std / 4.61;
                set(block, 0, d);
                set(block, 2, -7.5 * d);
            }
            // x = d (q - 16), q 0..32: σ = 9.23 d.
            QuantFormat::Q5_0 => set(block, 0, jitter * std / 9.23),
            QuantFormat::Q5_1 => {
                let d = jitter * std / 9.23;
                set(block, 0, d);
                set(block, 2, -15.5 * d);
            }
            // x = d q, q a random i8: σ = 73.9 d.
            QuantFormat::Q8_0 => set(block, 0, jitter * std / 73.9),
            // x = d sc q - dmin m, sc and m 0..64, q 0..16; dmin = 7.5 d centres the mean
            // sub-block: σ ≈ 258 d over the block.
            QuantFormat::Q4_K => {
                let d = jitter * std / 258.0;
                set(block, 0, d);
                set(block, 2, 7.5 * d);
            }
            // As Q4_K with q 0..32: σ ≈ 527 d.
            QuantFormat::Q5_K => {
                let d = jitter * std / 527.0;
                set(block, 0, d);
                set(block, 2, 15.5 * d);
            }
            // x = d sc (q - 32), q 0..64, sc an i8 kept within -32..32 (so that d stays a
            // normal f16): σ ≈ 341 d.
            QuantFormat::Q6_K => {
                for sc in &mut block[192..208] {
                    *sc = ((*sc as i8) >> 2) as u8;
                }
                set(block, 208, jitter * std / 341.0);
            }
            // Formats Hearth does not compute with: random bytes, for files it must refuse.
            _ => {}
        }
    }
    out
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), 24 bits.
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn string(s: &str) -> Vec<u8> {
    [(s.len() as u64).to_le_bytes().to_vec(), s.as_bytes().to_vec()].concat()
}

/// A GGUF v3 writer: metadata, then the tensor index, then each tensor's data at an offset
/// aligned to 32 bytes (the default `general.alignment`).
#[derive(Default)]
struct Writer {
    kv: Vec<(String, u32, Vec<u8>)>,
    tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
}

impl Writer {
    fn kv(&mut self, key: &str, type_id: u32, value: Vec<u8>) {
        self.kv.push((key.into(), type_id, value));
    }
    fn kv_str(&mut self, key: &str, value: &str) {
        self.kv(key, 8, string(value));
    }
    fn kv_u32(&mut self, key: &str, value: u32) {
        self.kv(key, 4, value.to_le_bytes().to_vec());
    }
    fn kv_f32(&mut self, key: &str, value: f32) {
        self.kv(key, 6, value.to_le_bytes().to_vec());
    }
    /// An array of `elements` of type `type_id`, each already encoded.
    fn kv_array(&mut self, key: &str, type_id: u32, elements: Vec<Vec<u8>>) {
        let mut v = type_id.to_le_bytes().to_vec();
        v.extend((elements.len() as u64).to_le_bytes());
        elements.into_iter().for_each(|e| v.extend(e));
        self.kv(key, 9, v);
    }
    fn tensor(&mut self, name: &str, dims: &[u64], type_id: u32, data: Vec<u8>) {
        self.tensors.push((name.into(), dims.to_vec(), type_id, data));
    }
    fn bytes(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
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
        out.resize(out.len().div_ceil(32) * 32, 0);
        let data_start = out.len();
        for ((_, _, _, data), off) in self.tensors.iter().zip(offsets) {
            out.resize(data_start + off as usize, 0);
            out.extend(data);
        }
        out
    }
}

/// SHA-256 of `data` in lowercase hex (FIPS 180-4), so the tests can check they made the very
/// bytes llama.cpp read, without a hashing dependency.
pub fn sha256_hex(data: &[u8]) -> String {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
        0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
        0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
        0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
        0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
        0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] =
        [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    let mut msg = data.to_vec();
    msg.push(0x80);
    msg.resize((msg.len() + 8).div_ceil(64) * 64 - 8, 0);
    msg.extend((data.len() as u64 * 8).to_be_bytes());
    for chunk in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (w, b) in w.iter_mut().zip(chunk.chunks_exact(4)) {
            *w = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for (k, w) in K.iter().zip(w) {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh.wrapping_add(s1).wrapping_add(ch).wrapping_add(*k).wrapping_add(w);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            (hh, g, f, e, d, c, b, a) = (g, f, e, d.wrapping_add(t1), c, b, a, t1.wrapping_add(t2));
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}
