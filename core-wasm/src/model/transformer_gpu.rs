//! llama, qwen2 and gemma3 on the GPU: the forward pass of [`super::transformer`] as WebGPU
//! compute through `hearth_kernels::gpu`, with the weights kept quantised in device memory.
//! The architectures' differences ([`ModelConfig`]) become different ops in the same list:
//! biases after the projections, per-head q/k norms, post-norms before the residual adds,
//! GeGLU for SwiGLU, scaled embeddings and queries, and windowed attention in local layers.
//!
//! Everything is built once at load: weight matrices, activation buffers sized for a prefill
//! chunk, the KV cache, and one prepared op (pipeline + bind group) per step of the pass. A
//! forward call writes the token ids and the step uniforms, encodes every op into one compute
//! pass, and reads back either the logits of the last token or, for greedy decoding, just the
//! argmax (its 4-byte index).
//!
//! Activations are f32 throughout (the CPU path quantises them to 8 bits for its dot products,
//! as llama.cpp's CPU backend does), so logits differ from the CPU's by rounding; see
//! `tests/tests/gpu_model.rs` and `core-wasm/tests/synthetic_models.rs` for how much.

use std::rc::Rc;

use hearth_kernels::gpu::{
    AttentionSpec, GpuBuffer, GpuContext, GpuMatrix, GpuOp, NormRows, RopeSpec, Step, StepBuffer,
};

use super::config::{MlpActivation, ModelConfig, RopeLayout};
use super::transformer::PREFILL_CHUNK;
use super::{ModelError, load_vector, tensor_info};
use crate::gguf::{ByteSource, Gguf};

/// What a forward pass reads back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readback {
    /// The last token's logits (`[vocab]`).
    Logits,
    /// Only the most likely next token (greedy decoding).
    Argmax,
}

/// The result of [`GpuTransformer::forward`].
#[derive(Clone, Debug, PartialEq)]
pub enum Prediction {
    Logits(Vec<f32>),
    Token(u32),
}

/// A model on a GPU, with its KV cache there.
pub struct GpuTransformer {
    pub config: ModelConfig,
    ctx: Rc<GpuContext>,
    n_ctx: usize,
    /// Step uniforms of the layers (the whole chunk) and of the output head (its last token).
    step: StepBuffer,
    head_step: StepBuffer,
    tokens: GpuBuffer,
    logits: GpuBuffer,
    argmax: GpuBuffer,
    /// Embedding lookup and every layer, in order.
    layers: Vec<GpuOp>,
    /// Final norm of the last token and the output head.
    head: Vec<GpuOp>,
    argmax_op: GpuOp,
    /// Bytes of weights on the device.
    weight_bytes: u64,
    // Keeps the buffers and weights the ops' bind groups point into alive.
    _resources: Resources,
}

#[derive(Default)]
struct Resources {
    matrices: Vec<GpuMatrix>,
    buffers: Vec<GpuBuffer>,
}

impl GpuTransformer {
    /// Uploads the weights of `g` (read from `src`) to `ctx`'s device and prepares the forward
    /// pass with `n_ctx` positions of KV cache (at most the training context).
    pub fn load<S: ByteSource + ?Sized>(
        g: &Gguf,
        src: &S,
        ctx: Rc<GpuContext>,
        n_ctx: usize,
    ) -> Result<Self, ModelError> {
        let c = ModelConfig::from_gguf(g)?;
        let n_ctx = n_ctx.clamp(1, c.context_length);
        let chunk = PREFILL_CHUNK;
        let (q_dim, kv_dim) = (c.q_dim(), c.kv_dim());
        let gpu = &*ctx;
        let mut res = Resources::default();

        let matrix = |res: &mut Resources, name: &str, cols: usize, rows: usize| -> Result<usize, ModelError> {
            let info = tensor_info(g, name, &[cols as u64, rows as u64])?;
            let data = g.tensor_data(src, info)?;
            let m = gpu
                .upload_matrix(name, info.format, &data, rows, cols)
                .map_err(|e| ModelError::GpuTensor { name: name.into(), source: e })?;
            res.matrices.push(m);
            Ok(res.matrices.len() - 1)
        };
        let vector = |res: &mut Resources, name: &str, len: usize| -> Result<usize, ModelError> {
            let v = load_vector(g, src, name, len)?;
            res.buffers.push(gpu.buffer_from(name, &v)?);
            Ok(res.buffers.len() - 1)
        };
        let activations = |res: &mut Resources, label: &str, len: usize| -> Result<usize, ModelError> {
            res.buffers.push(gpu.buffer(label, len)?);
            Ok(res.buffers.len() - 1)
        };

        // Weights, then activations for one chunk of tokens, then the KV cache.
        let token_embd = matrix(&mut res, "token_embd.weight", c.dim, c.vocab_size)?;
        let output = match g.tensor("output.weight") {
            Some(_) => matrix(&mut res, "output.weight", c.dim, c.vocab_size)?,
            None => token_embd,
        };
        let output_norm = vector(&mut res, "output_norm.weight", c.dim)?;
        struct BlockIds {
            attn_norm: usize,
            ffn_norm: usize,
            wq: usize,
            wk: usize,
            wv: usize,
            bias: Option<[usize; 3]>,
            qk_norm: Option<[usize; 2]>,
            wo: usize,
            post_norms: Option<[usize; 2]>,
            gate: usize,
            up: usize,
            down: usize,
            k_cache: GpuBuffer,
            v_cache: GpuBuffer,
        }
        let mut blocks = Vec::with_capacity(c.n_layers);
        for i in 0..c.n_layers {
            let name = |t: &str| format!("blk.{i}.{t}.weight");
            let bias = |res: &mut Resources, t: &str, len| vector(res, &format!("blk.{i}.{t}.bias"), len);
            blocks.push(BlockIds {
                attn_norm: vector(&mut res, &name("attn_norm"), c.dim)?,
                ffn_norm: vector(&mut res, &name("ffn_norm"), c.dim)?,
                wq: matrix(&mut res, &name("attn_q"), c.dim, q_dim)?,
                wk: matrix(&mut res, &name("attn_k"), c.dim, kv_dim)?,
                wv: matrix(&mut res, &name("attn_v"), c.dim, kv_dim)?,
                bias: match g.tensor(&format!("blk.{i}.attn_q.bias")) {
                    Some(_) => Some([
                        bias(&mut res, "attn_q", q_dim)?,
                        bias(&mut res, "attn_k", kv_dim)?,
                        bias(&mut res, "attn_v", kv_dim)?,
                    ]),
                    None => None,
                },
                qk_norm: match c.qk_norm {
                    true => Some([
                        vector(&mut res, &name("attn_q_norm"), c.head_dim)?,
                        vector(&mut res, &name("attn_k_norm"), c.head_dim)?,
                    ]),
                    false => None,
                },
                wo: matrix(&mut res, &name("attn_output"), q_dim, c.dim)?,
                post_norms: match c.post_norms {
                    true => Some([
                        vector(&mut res, &name("post_attention_norm"), c.dim)?,
                        vector(&mut res, &name("post_ffw_norm"), c.dim)?,
                    ]),
                    false => None,
                },
                gate: matrix(&mut res, &name("ffn_gate"), c.dim, c.ffn_dim)?,
                up: matrix(&mut res, &name("ffn_up"), c.dim, c.ffn_dim)?,
                down: matrix(&mut res, &name("ffn_down"), c.ffn_dim, c.dim)?,
                k_cache: gpu.kv_cache(&format!("blk.{i}.k_cache"), n_ctx as u32, kv_dim as u32)?,
                v_cache: gpu.kv_cache(&format!("blk.{i}.v_cache"), n_ctx as u32, kv_dim as u32)?,
            });
        }
        let weight_bytes = res.matrices.iter().map(GpuMatrix::device_bytes).sum::<u64>()
            + res.buffers.iter().map(|b| b.len() as u64 * 4).sum::<u64>();

        let tokens = gpu.buffer("tokens", chunk)?;
        let x = activations(&mut res, "x", chunk * c.dim)?;
        let h = activations(&mut res, "h", chunk * c.dim)?;
        let o = activations(&mut res, "o", chunk * c.dim)?;
        let q = activations(&mut res, "q", chunk * q_dim)?;
        let k = activations(&mut res, "k", chunk * kv_dim)?;
        let v = activations(&mut res, "v", chunk * kv_dim)?;
        // Queries and keys after their per-head norms (a norm cannot write its input).
        let (qn, kn) = match c.qk_norm {
            true => {
                (activations(&mut res, "q normed", chunk * q_dim)?, activations(&mut res, "k normed", chunk * kv_dim)?)
            }
            false => (q, k),
        };
        let attn = activations(&mut res, "attn", chunk * q_dim)?;
        let gate = activations(&mut res, "gate", chunk * c.ffn_dim)?;
        let up = activations(&mut res, "up", chunk * c.ffn_dim)?;
        let last = activations(&mut res, "last", c.dim)?;
        let logits = gpu.buffer("logits", c.vocab_size)?;
        let argmax = gpu.buffer("argmax", 2)?;

        let step = gpu.step_buffer();
        let head_step = gpu.step_buffer();
        let (dim, ffn, qd, kvd) = (c.dim as u32, c.ffn_dim as u32, q_dim as u32, kv_dim as u32);
        let head_dim = c.head_dim as u32;
        let rope = |n_heads: usize, layer: usize| RopeSpec {
            neox: c.rope == RopeLayout::Neox,
            n_heads: n_heads as u32,
            head_dim,
            n_rot: c.n_rot as u32,
            base: c.rope_base_of(layer),
        };
        // Where the queries are scaled before attention (gemma3), the scores are not.
        let attention = |layer: usize| AttentionSpec {
            n_heads: c.n_heads as u32,
            n_kv_heads: c.n_kv_heads as u32,
            head_dim,
            scale: if c.scale_queries { 1.0 } else { c.attention_scale },
            n_ctx: n_ctx as u32,
            window: match &c.sliding_window {
                Some(w) if w.local[layer] => Some(w.window.min(u32::MAX as usize) as u32),
                _ => None,
            },
        };
        let all = NormRows::AllTokens;

        let (m, b) = (&res.matrices, &res.buffers);
        let mut layers = vec![gpu.op_embed(&m[token_embd], &tokens, &b[x], &step)?];
        if let Some(factor) = c.embedding_scale {
            layers.push(gpu.op_scale(&b[x], dim, factor, &step)?);
        }
        for (layer, blk) in blocks.iter().enumerate() {
            layers.extend([
                gpu.op_rms_norm(&b[x], &b[blk.attn_norm], &b[h], dim, c.rms_eps, all, &step)?,
                gpu.op_matmul(&m[blk.wq], &b[h], &b[q], &step)?,
                gpu.op_matmul(&m[blk.wk], &b[h], &b[k], &step)?,
                gpu.op_matmul(&m[blk.wv], &b[h], &b[v], &step)?,
            ]);
            if let Some([bq, bk, bv]) = blk.bias {
                layers.extend([
                    gpu.op_add_bias(&b[q], &b[bq], qd, &step)?,
                    gpu.op_add_bias(&b[k], &b[bk], kvd, &step)?,
                    gpu.op_add_bias(&b[v], &b[bv], kvd, &step)?,
                ]);
            }
            if let Some([q_norm, k_norm]) = blk.qk_norm {
                let heads = |n: usize| NormRows::EachHead { heads: n as u32 };
                layers.extend([
                    gpu.op_rms_norm(&b[q], &b[q_norm], &b[qn], head_dim, c.rms_eps, heads(c.n_heads), &step)?,
                    gpu.op_rms_norm(&b[k], &b[k_norm], &b[kn], head_dim, c.rms_eps, heads(c.n_kv_heads), &step)?,
                ]);
            }
            layers.extend([
                gpu.op_rope(&b[qn], rope(c.n_heads, layer), &step)?,
                gpu.op_rope(&b[kn], rope(c.n_kv_heads, layer), &step)?,
            ]);
            if c.scale_queries {
                layers.push(gpu.op_scale(&b[qn], qd, c.attention_scale, &step)?);
            }
            layers.extend([
                gpu.op_kv_store(&b[kn], &blk.k_cache, kvd, &step)?,
                gpu.op_kv_store(&b[v], &blk.v_cache, kvd, &step)?,
                gpu.op_attention(&b[qn], &blk.k_cache, &blk.v_cache, &b[attn], attention(layer), &step)?,
                gpu.op_matmul(&m[blk.wo], &b[attn], &b[o], &step)?,
            ]);
            // The block's output, normed first where the architecture has post-norms.
            let residual = |post_norm: Option<usize>| -> Result<Vec<GpuOp>, ModelError> {
                Ok(match post_norm {
                    Some(norm) => vec![
                        gpu.op_rms_norm(&b[o], &b[norm], &b[h], dim, c.rms_eps, all, &step)?,
                        gpu.op_add(&b[x], &b[h], dim, &step)?,
                    ],
                    None => vec![gpu.op_add(&b[x], &b[o], dim, &step)?],
                })
            };
            layers.extend(residual(blk.post_norms.map(|[attn, _]| attn))?);
            layers.extend([
                gpu.op_rms_norm(&b[x], &b[blk.ffn_norm], &b[h], dim, c.rms_eps, all, &step)?,
                gpu.op_matmul(&m[blk.gate], &b[h], &b[gate], &step)?,
                gpu.op_matmul(&m[blk.up], &b[h], &b[up], &step)?,
                match c.mlp {
                    MlpActivation::Silu => gpu.op_silu_mul(&b[gate], &b[up], ffn, &step)?,
                    MlpActivation::Gelu => gpu.op_gelu_mul(&b[gate], &b[up], ffn, &step)?,
                },
                gpu.op_matmul(&m[blk.down], &b[gate], &b[o], &step)?,
            ]);
            layers.extend(residual(blk.post_norms.map(|[_, ffw]| ffw))?);
        }
        // The last token's norm reads the layers' step (which says how many tokens there are);
        // the head then works on that one row.
        let head = vec![
            gpu.op_rms_norm(&b[x], &b[output_norm], &b[last], dim, c.rms_eps, NormRows::LastToken, &step)?,
            gpu.op_matmul(&m[output], &b[last], &logits, &head_step)?,
        ];
        let argmax_op = gpu.op_argmax(&logits, c.vocab_size as u32, &argmax, &head_step)?;
        for blk in blocks {
            res.buffers.extend([blk.k_cache, blk.v_cache]);
        }
        Ok(Self {
            config: c,
            ctx,
            n_ctx,
            step,
            head_step,
            tokens,
            logits,
            argmax,
            layers,
            head,
            argmax_op,
            weight_bytes,
            _resources: res,
        })
    }

    /// Positions the KV cache holds.
    pub fn context_size(&self) -> usize {
        self.n_ctx
    }

    /// Bytes of weights in device memory (what a decode step reads).
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    pub fn gpu(&self) -> &GpuContext {
        &self.ctx
    }

    /// Runs `tokens` (at most [`PREFILL_CHUNK`]) at positions `pos..pos + tokens.len()`,
    /// filling the KV cache, and reads back the prediction for the next token. With
    /// `readback: None` nothing is read (a prefill chunk that is not the last).
    pub async fn forward(
        &mut self,
        tokens: &[u32],
        pos: usize,
        readback: Option<Readback>,
    ) -> Result<Option<Prediction>, ModelError> {
        let n = tokens.len();
        if n == 0 || n > PREFILL_CHUNK {
            return Err(ModelError::BadChunk { tokens: n, max: PREFILL_CHUNK });
        }
        if pos + n > self.n_ctx {
            return Err(ModelError::ContextFull { needed: pos + n, context: self.n_ctx });
        }
        let vocab = self.config.vocab_size;
        if let Some(&token) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(ModelError::TokenOutOfRange { token, vocab });
        }
        let gpu = &*self.ctx;
        gpu.write(&self.tokens, 0, tokens)?;
        let step = Step { n_tokens: n as u32, pos: pos as u32 };
        let head_step = Step { n_tokens: 1, pos: (pos + n - 1) as u32 };
        let layers: Vec<&GpuOp> = self.layers.iter().collect();
        let mut head: Vec<&GpuOp> = Vec::new();
        if readback.is_some() {
            head.extend(&self.head);
        }
        if readback == Some(Readback::Argmax) {
            head.push(&self.argmax_op);
        }
        gpu.run_segments(&[(&self.step, step, &layers), (&self.head_step, head_step, &head)])?;
        Ok(match readback {
            None => None,
            Some(Readback::Logits) => Some(Prediction::Logits(gpu.read(&self.logits, 0..vocab).await?)),
            Some(Readback::Argmax) => {
                let out: Vec<u32> = gpu.read(&self.argmax, 0..1).await?;
                Some(Prediction::Token(out[0]))
            }
        })
    }
}

impl GpuTransformer {
    /// Times one decode step op by op (each op submitted alone and awaited by reading back one
    /// value, less the time of an empty submit and read), summed per kernel family, slowest
    /// first: what a decode step spends its GPU time on. `clock` gives milliseconds. Leaves
    /// position `pos` of the KV cache written.
    pub async fn profile_decode(
        &mut self,
        token: u32,
        pos: usize,
        clock: fn() -> f64,
    ) -> Result<Vec<(&'static str, f64)>, ModelError> {
        let gpu = &*self.ctx;
        gpu.write(&self.tokens, 0, &[token])?;
        let step = Step { n_tokens: 1, pos: pos as u32 };
        let done = &self.argmax;
        let timed = |buffer: &StepBuffer, ops: &[&GpuOp]| {
            let start = clock();
            let ran = gpu.run_segments(&[(buffer, step, ops)]);
            async move {
                ran?;
                gpu.read::<u32>(done, 0..1).await?;
                Ok::<f64, ModelError>(clock() - start)
            }
        };
        let mut overhead = f64::INFINITY;
        for _ in 0..5 {
            overhead = overhead.min(timed(&self.step, &[]).await?);
        }
        let mut families: Vec<(&'static str, f64)> = Vec::new();
        let ops = self.layers.iter().map(|op| (&self.step, op)).chain(self.head.iter().map(|op| {
            // The final norm reads the chunk's step; the head matmul its own.
            let buffer = if op.label().contains("norm") { &self.step } else { &self.head_step };
            (buffer, op)
        }));
        for (buffer, op) in ops {
            let ms = (timed(buffer, &[op]).await? - overhead).max(0.0);
            match families.iter_mut().find(|(label, _)| *label == op.label()) {
                Some((_, total)) => *total += ms,
                None => families.push((op.label(), ms)),
            }
        }
        families.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(families)
    }
}
