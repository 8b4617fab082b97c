//! The decoder-only transformer of llama, qwen2 and gemma3 on the CPU: pre-norm blocks of
//! RMSNorm → grouped-query attention with RoPE → residual, RMSNorm → gated MLP → residual; a
//! final RMSNorm and an output head (tied to the token embeddings when the file has no
//! `output.weight`). What differs between the architectures is data in [`ModelConfig`].
//! Follows llama.cpp's graphs (`llm_build_llama`, `llm_build_qwen2`, `llama_model_gemma3`) and
//! its CPU arithmetic: an f16 KV cache, queries and attention weights rounded to f16 before
//! their dot products with it.

use half::f16;
use hearth_kernels::cpu::ops::{add, gelu_mul, rms_norm, rope_neox, rope_norm, silu_mul};
use hearth_kernels::cpu::{KvHead, attend_head, pool};
use rayon::prelude::*;

use super::config::{MlpActivation, ModelConfig, RopeLayout};
use super::op_profile::time;
use super::{ModelError, QMatrix, load_vector};
use crate::gguf::{ByteSource, Gguf};

/// One decoder block's weights.
struct Block {
    attn_norm: Vec<f32>, // [dim]
    wq: QMatrix,         // [dim] -> [q_dim]
    wk: QMatrix,         // [dim] -> [kv_dim]
    wv: QMatrix,         // [dim] -> [kv_dim]
    /// q, k and v biases, where the file has them (qwen2).
    bias: Option<[Vec<f32>; 3]>,
    /// Per-head RMSNorm weights of queries and keys ([head_dim] each), where the
    /// architecture has them (gemma3).
    qk_norm: Option<[Vec<f32>; 2]>,
    wo: QMatrix, // [q_dim] -> [dim]
    /// Norms of the attention and MLP outputs ([dim] each), where the architecture has them.
    post_norms: Option<[Vec<f32>; 2]>,
    ffn_norm: Vec<f32>, // [dim]
    w_gate: QMatrix,    // [dim] -> [ffn_dim]
    w_up: QMatrix,      // [dim] -> [ffn_dim]
    w_down: QMatrix,    // [ffn_dim] -> [dim]
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

/// A loaded model with its KV cache.
pub struct Transformer {
    pub config: ModelConfig,
    token_embd: QMatrix, // [vocab] rows of [dim]
    blocks: Vec<Block>,
    output_norm: Vec<f32>,   // [dim]
    output: Option<QMatrix>, // [dim] -> [vocab]; None: tied to token_embd
    cache: KvCache,
}

/// Prompt tokens run through the model per forward call while prefilling.
pub const PREFILL_CHUNK: usize = 64;

impl Transformer {
    /// Loads the weights of `g` from `src`; `n_ctx` positions of KV cache (at most the
    /// training context).
    pub fn load<S: ByteSource + ?Sized>(g: &Gguf, src: &S, n_ctx: usize) -> Result<Self, ModelError> {
        let config = ModelConfig::from_gguf(g)?;
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
            let v = |t: &str, len| load_vector(g, src, &name(t), len);
            let bias = |t: &str, len| load_vector(g, src, &format!("blk.{i}.{t}.bias"), len);
            let bias = match g.tensor(&format!("blk.{i}.attn_q.bias")) {
                Some(_) => Some([bias("attn_q", c.q_dim())?, bias("attn_k", c.kv_dim())?, bias("attn_v", c.kv_dim())?]),
                None => None,
            };
            blocks.push(Block {
                attn_norm: v("attn_norm", c.dim)?,
                wq: m("attn_q", c.dim, c.q_dim())?,
                wk: m("attn_k", c.dim, c.kv_dim())?,
                wv: m("attn_v", c.dim, c.kv_dim())?,
                bias,
                qk_norm: match c.qk_norm {
                    true => Some([v("attn_q_norm", c.head_dim)?, v("attn_k_norm", c.head_dim)?]),
                    false => None,
                },
                wo: m("attn_output", c.q_dim(), c.dim)?,
                post_norms: match c.post_norms {
                    true => Some([v("post_attention_norm", c.dim)?, v("post_ffw_norm", c.dim)?]),
                    false => None,
                },
                ffn_norm: v("ffn_norm", c.dim)?,
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

    /// Times one decode step of `token` at `pos` op family by op family (milliseconds, slowest
    /// first): where a decode step on the CPU spends its time. Leaves position `pos` of the KV
    /// cache written.
    pub fn profile_decode(&mut self, token: u32, pos: usize) -> Result<Vec<(&'static str, f64)>, ModelError> {
        let (result, times) = super::op_profile::profile(|| self.forward(&[token], pos, false));
        result.map(|_| times)
    }

    /// One forward pass over several sequences, each with its own cache and positions: the
    /// weights are read once for all their tokens. Returns each sequence's logits as
    /// [`Transformer::forward`] does. A sequence's logits do not depend on the others in the batch:
    /// every matrix row is dotted with each token's vector on its own.
    pub fn forward_batch(&self, seqs: &mut [Sequence<'_>], all_logits: bool) -> Result<Vec<Vec<f32>>, ModelError> {
        // On a pool thread, each parallel op below forks and joins there, rather than parking
        // the calling thread and waking it again for every matrix (hundreds per token).
        rayon::scope(|_| pool::timed(|| self.forward_on_pool(seqs, all_logits)))
    }

    fn forward_on_pool(&self, seqs: &mut [Sequence<'_>], all_logits: bool) -> Result<Vec<Vec<f32>>, ModelError> {
        let c = &self.config;
        let (dim, q_dim, kv) = (c.dim, c.q_dim(), c.kv_dim());
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
        if let Some(scale) = c.embedding_scale {
            x.iter_mut().for_each(|v| *v *= scale);
        }
        // (first row, tokens, position) of each sequence.
        let mut spans = Vec::with_capacity(seqs.len());
        let mut row = 0;
        for s in seqs.iter() {
            spans.push((row, s.tokens.len(), s.pos));
            row += s.tokens.len();
        }
        let rope = match c.rope {
            RopeLayout::Normal => rope_norm,
            RopeLayout::Neox => rope_neox,
        };
        for (layer, block) in self.blocks.iter().enumerate() {
            // Attention.
            let mut h = x.clone();
            time("rms_norm", || h.chunks_exact_mut(dim).for_each(|row| rms_norm(row, &block.attn_norm, c.rms_eps)));
            // q: [rows][q_dim], k and v: [rows][kv_dim].
            let [mut q, mut k, mut v] =
                time("matmul q/k/v", || QMatrix::matmul_many([&block.wq, &block.wk, &block.wv], &h))?;
            if let Some([bq, bk, bv]) = &block.bias {
                q.chunks_exact_mut(q_dim).for_each(|row| add(row, bq));
                k.chunks_exact_mut(kv).for_each(|row| add(row, bk));
                v.chunks_exact_mut(kv).for_each(|row| add(row, bv));
            }
            if let Some([q_norm, k_norm]) = &block.qk_norm {
                q.chunks_exact_mut(c.head_dim).for_each(|head| rms_norm(head, q_norm, c.rms_eps));
                k.chunks_exact_mut(c.head_dim).for_each(|head| rms_norm(head, k_norm, c.rms_eps));
            }
            let rope_base = c.rope_base_of(layer);
            let mut att = Vec::with_capacity(q.len());
            for (s, &(first, n, pos)) in seqs.iter_mut().zip(&spans) {
                let q = &mut q[first * q_dim..(first + n) * q_dim];
                let k = &mut k[first * kv..(first + n) * kv];
                let (k_cache, v_cache) = (&mut s.cache.k[layer], &mut s.cache.v[layer]);
                time("rope, KV cache", || {
                    for t in 0..n {
                        rope(&mut q[t * q_dim..(t + 1) * q_dim], c.head_dim, c.n_rot, pos + t, rope_base);
                        rope(&mut k[t * kv..(t + 1) * kv], c.head_dim, c.n_rot, pos + t, rope_base);
                    }
                    for (dst, src) in k_cache[pos * kv..(pos + n) * kv].iter_mut().zip(k.iter()) {
                        *dst = f16::from_f32(*src);
                    }
                    for (dst, src) in v_cache[pos * kv..(pos + n) * kv].iter_mut().zip(&v[first * kv..(first + n) * kv])
                    {
                        *dst = f16::from_f32(*src);
                    }
                });
                att.extend(time("attention", || attention(c, layer, q, k_cache, v_cache, pos, n)));
            }
            let mut out = time("matmul o", || block.wo.matmul(&att))?;
            if let Some([post_attention, _]) = &block.post_norms {
                out.chunks_exact_mut(dim).for_each(|row| rms_norm(row, post_attention, c.rms_eps));
            }
            time("add", || add(&mut x, &out));

            // MLP.
            let mut h = x.clone();
            time("rms_norm", || h.chunks_exact_mut(dim).for_each(|row| rms_norm(row, &block.ffn_norm, c.rms_eps)));
            let [mut gate, up] = time("matmul gate/up", || QMatrix::matmul_many([&block.w_gate, &block.w_up], &h))?;
            time("silu/gelu", || match c.mlp {
                MlpActivation::Silu => silu_mul(&mut gate, &up),
                MlpActivation::Gelu => gelu_mul(&mut gate, &up),
            });
            let mut out = time("matmul down", || block.w_down.matmul(&gate))?;
            if let Some([_, post_ffw]) = &block.post_norms {
                out.chunks_exact_mut(dim).for_each(|row| rms_norm(row, post_ffw, c.rms_eps));
            }
            time("add", || add(&mut x, &out));
        }
        // The rows whose logits are wanted: every row, or each sequence's last.
        let wanted: Vec<(usize, usize)> =
            spans.iter().map(|&(first, n, _)| if all_logits { (first, n) } else { (first + n - 1, 1) }).collect();
        let mut normed: Vec<f32> =
            wanted.iter().flat_map(|&(r, n)| x[r * dim..(r + n) * dim].iter().copied()).collect();
        normed.chunks_exact_mut(dim).for_each(|row| rms_norm(row, &self.output_norm, c.rms_eps));
        let logits = time("matmul output", || self.output.as_ref().unwrap_or(&self.token_embd).matmul(&normed))?;
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
    fn allocate(&mut self, c: &ModelConfig) {
        if self.k.is_empty() {
            let size = self.n_ctx * c.kv_dim();
            self.k = (0..c.n_layers).map(|_| vec![f16::ZERO; size]).collect();
            self.v = (0..c.n_layers).map(|_| vec![f16::ZERO; size]).collect();
        }
    }
}

/// Causal grouped-query attention in `layer` for `n` new tokens at `pos..pos + n` over the f16
/// cache: `softmax(q·kᵀ · scale) v` per head over the positions each query sees (all before
/// it, or its sliding window), returning `[n][q_dim]`.
fn attention(
    c: &ModelConfig,
    layer: usize,
    q: &[f32],
    k_cache: &[f16],
    v_cache: &[f16],
    pos: usize,
    n: usize,
) -> Vec<f32> {
    let (hd, kv, q_dim) = (c.head_dim, c.kv_dim(), c.q_dim());
    let group = c.n_heads / c.n_kv_heads;
    let (q, scale) = match c.scale_queries {
        true => (std::borrow::Cow::Owned(q.iter().map(|v| v * c.attention_scale).collect()), 1.0),
        false => (std::borrow::Cow::Borrowed(q), c.attention_scale),
    };
    let mut out = vec![0.0f32; n * q_dim];
    out.par_chunks_mut(hd).enumerate().for_each(|(i, out_head)| {
        pool::timed(|| {
            let (t, head) = (i / c.n_heads, i % c.n_heads);
            // Positions first..=pos + t; the cache slices start at the first.
            let first = c.first_visible(layer, pos + t);
            let kv_head =
                KvHead { k: &k_cache[first * kv..], v: &v_cache[first * kv..], stride: kv, offset: head / group * hd };
            attend_head(&q[t * q_dim + head * hd..][..hd], kv_head, pos + t + 1 - first, scale, out_head);
        })
    });
    out
}
