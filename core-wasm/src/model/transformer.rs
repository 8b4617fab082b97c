//! The llama architecture (SmolLM2, Llama 2/3, TinyLlama...): pre-norm decoder blocks of
//! RMSNorm → grouped-query attention with RoPE → residual, RMSNorm → SwiGLU MLP → residual;
//! a final RMSNorm and an output head (tied to the token embeddings when the file has no
//! `output.weight`). Follows llama.cpp's `llm_build_llama` and its CPU arithmetic: RoPE in the
//! "normal" (adjacent pairs) layout, an f16 KV cache, queries and attention weights rounded to
//! f16 before their dot products with it.

use half::f16;
use hearth_kernels::cpu::ops::{add, rms_norm, rope_norm, silu_mul};
use hearth_kernels::cpu::{KvHead, attend_head};
use rayon::prelude::*;

use super::{ModelError, QMatrix, load_vector};
use crate::gguf::{ByteSource, Gguf, Value};

/// Hyper-parameters, from the GGUF's `llama.*` metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    pub vocab_size: usize,
    /// Model width (`embedding_length`).
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn_dim: usize,
    /// Dimensions of each head that RoPE rotates.
    pub n_rot: usize,
    pub rope_base: f32,
    pub rms_eps: f32,
    /// Training context length.
    pub context_length: usize,
}

/// Upper bounds on what a file may claim, so a lying header cannot make us allocate terabytes.
const MAX_DIM: u64 = 1 << 16;
const MAX_LAYERS: u64 = 1 << 10;
const MAX_VOCAB: u64 = 1 << 22;

impl LlamaConfig {
    pub fn from_gguf(g: &Gguf) -> Result<Self, ModelError> {
        let arch = g.get_str("general.architecture")?;
        if arch != "llama" {
            return Err(ModelError::UnsupportedArchitecture(arch.into()));
        }
        let int = |key: &str, max: u64| -> Result<usize, ModelError> {
            let key = format!("llama.{key}");
            let v = g.get_u64(&key)?;
            if v == 0 || v > max {
                return Err(ModelError::BadConfig { key, value: v.to_string(), why: "out of range" });
            }
            Ok(v as usize)
        };
        let dim = int("embedding_length", MAX_DIM)?;
        let n_heads = int("attention.head_count", MAX_DIM)?;
        let n_kv_heads = match g.metadata.get("llama.attention.head_count_kv") {
            Some(_) => int("attention.head_count_kv", MAX_DIM)?,
            None => n_heads,
        };
        if dim % n_heads != 0 || n_heads % n_kv_heads != 0 {
            return Err(ModelError::BadConfig {
                key: "llama.attention.head_count".into(),
                value: format!("{n_heads} (kv {n_kv_heads}, width {dim})"),
                why: "heads must divide the width and be a multiple of the kv heads",
            });
        }
        let head_dim = dim / n_heads;
        let n_rot = match g.metadata.get("llama.rope.dimension_count") {
            Some(_) => int("rope.dimension_count", head_dim as u64)?,
            None => head_dim,
        };
        if n_rot % 2 != 0 {
            return Err(ModelError::BadConfig {
                key: "llama.rope.dimension_count".into(),
                value: n_rot.to_string(),
                why: "must be even",
            });
        }
        let vocab_size = match g.get("tokenizer.ggml.tokens")? {
            Value::Array(tokens) if !tokens.is_empty() && tokens.len() as u64 <= MAX_VOCAB => tokens.len(),
            other => {
                return Err(ModelError::BadConfig {
                    key: "tokenizer.ggml.tokens".into(),
                    value: other.type_name().into(),
                    why: "expected a non-empty array of token strings",
                });
            }
        };
        let float = |key: &str, default: f64| -> Result<f32, ModelError> {
            let key = format!("llama.{key}");
            let v = if g.metadata.contains_key(&key) { g.get_f64(&key)? } else { default };
            if !(v.is_finite() && v > 0.0) {
                return Err(ModelError::BadConfig { key, value: v.to_string(), why: "must be a positive number" });
            }
            Ok(v as f32)
        };
        Ok(Self {
            vocab_size,
            dim,
            n_layers: int("block_count", MAX_LAYERS)?,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_dim: int("feed_forward_length", MAX_DIM * 4)?,
            n_rot,
            rope_base: float("rope.freq_base", 10_000.0)?,
            rms_eps: float("attention.layer_norm_rms_epsilon", 1e-5)?,
            context_length: int("context_length", 1 << 24)?,
        })
    }

    fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}

/// One decoder block's weights.
struct Block {
    attn_norm: Vec<f32>, // [dim]
    wq: QMatrix,         // [dim] -> [dim]
    wk: QMatrix,         // [dim] -> [kv_dim]
    wv: QMatrix,         // [dim] -> [kv_dim]
    wo: QMatrix,         // [dim] -> [dim]
    ffn_norm: Vec<f32>,  // [dim]
    w_gate: QMatrix,     // [dim] -> [ffn_dim]
    w_up: QMatrix,       // [dim] -> [ffn_dim]
    w_down: QMatrix,     // [ffn_dim] -> [dim]
}

/// A sequence's KV cache: per layer, `[n_ctx][kv_dim]` keys and values in f16 (llama.cpp's
/// default). Allocated by the first forward pass, so a model kept only as the GPU's fallback
/// holds none.
#[derive(Default)]
pub struct KvCache {
    k: Vec<Vec<f16>>,
    v: Vec<Vec<f16>>,
    n_ctx: usize,
}

/// A loaded llama model with its KV cache.
pub struct Llama {
    pub config: LlamaConfig,
    token_embd: QMatrix, // [vocab] rows of [dim]
    blocks: Vec<Block>,
    output_norm: Vec<f32>,   // [dim]
    output: Option<QMatrix>, // [dim] -> [vocab]; None: tied to token_embd
    cache: KvCache,
}

/// Prompt tokens run through the model per forward call while prefilling.
pub const PREFILL_CHUNK: usize = 64;

impl Llama {
    /// Loads the weights of `g` from `src`; `n_ctx` positions of KV cache (at most the
    /// training context).
    pub fn load<S: ByteSource + ?Sized>(g: &Gguf, src: &S, n_ctx: usize) -> Result<Self, ModelError> {
        let config = LlamaConfig::from_gguf(g)?;
        let c = &config;
        let token_embd = QMatrix::load(g, src, "token_embd.weight", c.dim, c.vocab_size)?;
        let output = match g.tensor("output.weight") {
            Some(_) => Some(QMatrix::load(g, src, "output.weight", c.dim, c.vocab_size)?),
            None => None,
        };
        let mut blocks = Vec::with_capacity(c.n_layers);
        for i in 0..c.n_layers {
            let name = |t: &str| format!("blk.{i}.{t}.weight");
            let m = |t: &str, cols, rows| QMatrix::load(g, src, &name(t), cols, rows);
            blocks.push(Block {
                attn_norm: load_vector(g, src, &name("attn_norm"), c.dim)?,
                wq: m("attn_q", c.dim, c.dim)?,
                wk: m("attn_k", c.dim, c.kv_dim())?,
                wv: m("attn_v", c.dim, c.kv_dim())?,
                wo: m("attn_output", c.dim, c.dim)?,
                ffn_norm: load_vector(g, src, &name("ffn_norm"), c.dim)?,
                w_gate: m("ffn_gate", c.dim, c.ffn_dim)?,
                w_up: m("ffn_up", c.dim, c.ffn_dim)?,
                w_down: m("ffn_down", c.ffn_dim, c.dim)?,
            });
        }
        let output_norm = load_vector(g, src, "output_norm.weight", c.dim)?;
        let n_ctx = n_ctx.clamp(1, c.context_length);
        let cache = KvCache { k: Vec::new(), v: Vec::new(), n_ctx };
        Ok(Self { config, token_embd, blocks, output_norm, output, cache })
    }

    /// Positions the KV cache holds.
    pub fn context_size(&self) -> usize {
        self.cache.n_ctx
    }

    /// A KV cache of its own for another sequence, `n_ctx` positions (at most the model's).
    pub fn new_cache(&self, n_ctx: usize) -> KvCache {
        KvCache { n_ctx: n_ctx.clamp(1, self.cache.n_ctx), ..KvCache::default() }
    }

    /// Copies the first `len` positions of `from` into `to` (a shared prompt prefix).
    pub fn copy_prefix(&self, from: &KvCache, to: &mut KvCache, len: usize) -> Result<(), ModelError> {
        let kv = self.config.kv_dim();
        if len == 0 {
            return Ok(());
        }
        if len > from.n_ctx.min(to.n_ctx) || from.k.is_empty() {
            return Err(ModelError::ContextFull { needed: len, context: from.n_ctx.min(to.n_ctx) });
        }
        to.allocate(&self.config);
        for layer in 0..self.config.n_layers {
            to.k[layer][..len * kv].copy_from_slice(&from.k[layer][..len * kv]);
            to.v[layer][..len * kv].copy_from_slice(&from.v[layer][..len * kv]);
        }
        Ok(())
    }

    /// Runs `tokens` at positions `pos..pos + tokens.len()`, filling the model's own KV cache,
    /// and returns the logits of the last token (`[vocab]`), or of every token (`[n][vocab]`)
    /// if `all_logits`. Positions before `pos` must already be in the cache.
    pub fn forward(&mut self, tokens: &[u32], pos: usize, all_logits: bool) -> Result<Vec<f32>, ModelError> {
        let mut cache = std::mem::take(&mut self.cache);
        let result = self.forward_batch(&mut [Sequence { cache: &mut cache, tokens, pos }], all_logits);
        self.cache = cache;
        result.map(|mut logits| logits.remove(0))
    }

    /// One forward pass over several sequences, each with its own cache and positions: the
    /// weights are read once for all their tokens. Returns each sequence's logits as
    /// [`Llama::forward`] does. A sequence's logits do not depend on the others in the batch:
    /// every matrix row is dotted with each token's vector on its own.
    pub fn forward_batch(&self, seqs: &mut [Sequence<'_>], all_logits: bool) -> Result<Vec<Vec<f32>>, ModelError> {
        // On a pool thread, each parallel op below forks and joins there, rather than parking
        // the calling thread and waking it again for every matrix (hundreds per token).
        rayon::scope(|_| self.forward_on_pool(seqs, all_logits))
    }

    fn forward_on_pool(&self, seqs: &mut [Sequence<'_>], all_logits: bool) -> Result<Vec<Vec<f32>>, ModelError> {
        let c = &self.config;
        let (dim, kv) = (c.dim, c.kv_dim());
        // x: [rows][dim], the residual stream; the sequences' tokens one after another.
        let mut x = Vec::new();
        for s in seqs.iter_mut() {
            if s.tokens.is_empty() || s.pos + s.tokens.len() > s.cache.n_ctx {
                return Err(ModelError::ContextFull { needed: s.pos + s.tokens.len(), context: s.cache.n_ctx });
            }
            s.cache.allocate(c);
            for &t in s.tokens {
                if t as usize >= c.vocab_size {
                    return Err(ModelError::TokenOutOfRange { token: t, vocab: c.vocab_size });
                }
                x.extend(self.token_embd.row(t as usize)?);
            }
        }
        // (first row, tokens, position) of each sequence.
        let mut spans = Vec::with_capacity(seqs.len());
        let mut row = 0;
        for s in seqs.iter() {
            spans.push((row, s.tokens.len(), s.pos));
            row += s.tokens.len();
        }
        for (layer, block) in self.blocks.iter().enumerate() {
            // Attention.
            let mut h = x.clone();
            h.chunks_exact_mut(dim).for_each(|row| rms_norm(row, &block.attn_norm, c.rms_eps));
            // q: [rows][dim], k and v: [rows][kv_dim].
            let [mut q, mut k, v] = QMatrix::matmul_many([&block.wq, &block.wk, &block.wv], &h)?;
            let mut att = Vec::with_capacity(q.len());
            for (s, &(first, n, pos)) in seqs.iter_mut().zip(&spans) {
                let q = &mut q[first * dim..(first + n) * dim];
                let k = &mut k[first * kv..(first + n) * kv];
                for t in 0..n {
                    rope_norm(&mut q[t * dim..(t + 1) * dim], c.head_dim, c.n_rot, pos + t, c.rope_base);
                    rope_norm(&mut k[t * kv..(t + 1) * kv], c.head_dim, c.n_rot, pos + t, c.rope_base);
                }
                let (k_cache, v_cache) = (&mut s.cache.k[layer], &mut s.cache.v[layer]);
                for (dst, src) in k_cache[pos * kv..(pos + n) * kv].iter_mut().zip(k.iter()) {
                    *dst = f16::from_f32(*src);
                }
                for (dst, src) in v_cache[pos * kv..(pos + n) * kv].iter_mut().zip(&v[first * kv..(first + n) * kv]) {
                    *dst = f16::from_f32(*src);
                }
                att.extend(attention(c, q, k_cache, v_cache, pos, n));
            }
            add(&mut x, &block.wo.matmul(&att)?);

            // MLP.
            let mut h = x.clone();
            h.chunks_exact_mut(dim).for_each(|row| rms_norm(row, &block.ffn_norm, c.rms_eps));
            let [mut gate, up] = QMatrix::matmul_many([&block.w_gate, &block.w_up], &h)?;
            silu_mul(&mut gate, &up);
            add(&mut x, &block.w_down.matmul(&gate)?);
        }
        // The rows whose logits are wanted: every row, or each sequence's last.
        let wanted: Vec<(usize, usize)> =
            spans.iter().map(|&(first, n, _)| if all_logits { (first, n) } else { (first + n - 1, 1) }).collect();
        let mut normed: Vec<f32> =
            wanted.iter().flat_map(|&(r, n)| x[r * dim..(r + n) * dim].iter().copied()).collect();
        normed.chunks_exact_mut(dim).for_each(|row| rms_norm(row, &self.output_norm, c.rms_eps));
        let logits = self.output.as_ref().unwrap_or(&self.token_embd).matmul(&normed)?;
        let vocab = c.vocab_size;
        let mut at = 0;
        Ok(wanted
            .iter()
            .map(|&(_, n)| {
                let l = logits[at * vocab..(at + n) * vocab].to_vec();
                at += n;
                l
            })
            .collect())
    }
}

/// A sequence in a batched forward pass: its cache, its new tokens, and their first position
/// (positions before it must already be in the cache).
pub struct Sequence<'a> {
    pub cache: &'a mut KvCache,
    pub tokens: &'a [u32],
    pub pos: usize,
}

impl KvCache {
    fn allocate(&mut self, c: &LlamaConfig) {
        if self.k.is_empty() {
            let size = self.n_ctx * c.kv_dim();
            self.k = (0..c.n_layers).map(|_| vec![f16::ZERO; size]).collect();
            self.v = (0..c.n_layers).map(|_| vec![f16::ZERO; size]).collect();
        }
    }
}

/// Causal grouped-query attention for `n` new tokens at `pos..pos + n` over the f16 cache:
/// `softmax(q·kᵀ / sqrt(head_dim)) v` per head, returning `[n][dim]`.
fn attention(c: &LlamaConfig, q: &[f32], k_cache: &[f16], v_cache: &[f16], pos: usize, n: usize) -> Vec<f32> {
    let (hd, kv) = (c.head_dim, c.kv_dim());
    let group = c.n_heads / c.n_kv_heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let mut out = vec![0.0f32; n * c.dim];
    out.par_chunks_mut(hd).enumerate().for_each(|(i, out_head)| {
        let (t, head) = (i / c.n_heads, i % c.n_heads);
        let kv_head = KvHead { k: k_cache, v: v_cache, stride: kv, offset: head / group * hd };
        attend_head(&q[t * c.dim + head * hd..][..hd], kv_head, pos + t + 1, scale, out_head);
    });
    out
}
