//! What a model file is: its architecture and hyper-parameters, read from the GGUF metadata
//! (`{arch}.*` keys) as llama.cpp reads them. The architectures differ in a few well-defined
//! ways, which [`ModelConfig`] states as data so one forward pass ([`super::transformer`]) runs
//! them all:
//!
//! | | llama | qwen2 | gemma3 |
//! |---|---|---|---|
//! | RoPE pairs | adjacent (`norm`) | halves (`neox`) | halves (`neox`) |
//! | MLP | SwiGLU | SwiGLU | GeGLU (tanh GELU) |
//! | q/k/v biases | if the file has them | yes | no |
//! | per-head RMSNorm of q and k | no | no | yes |
//! | RMSNorm after attention and MLP | no | no | yes |
//! | embeddings scaled by √dim | no | no | yes |
//! | attention | global | global | 5 of 6 layers in a sliding window, with their own RoPE base |

use super::ModelError;
use crate::gguf::{Gguf, Value};

/// The architectures Hearth runs (`general.architecture`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    Llama,
    Qwen2,
    Gemma3,
}

impl Architecture {
    pub const ALL: [Architecture; 3] = [Self::Llama, Self::Qwen2, Self::Gemma3];

    /// As GGUF names it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Gemma3 => "gemma3",
        }
    }

    /// The architecture `general.architecture` names, or an error listing the supported ones.
    pub fn from_name(name: &str) -> Result<Self, ModelError> {
        Self::ALL.into_iter().find(|a| a.name() == name).ok_or_else(|| ModelError::UnsupportedArchitecture(name.into()))
    }

    /// "llama, qwen2, gemma3", for messages.
    pub fn supported_list() -> String {
        Self::ALL.map(Self::name).join(", ")
    }
}

/// How RoPE pairs the dimensions of a head (ggml's rope modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeLayout {
    /// `(x[2i], x[2i+1])`: llama.
    Normal,
    /// `(x[i], x[i + n_rot/2])`: GPT-NeoX, qwen2, gemma.
    Neox,
}

/// The gated MLP's activation: `down(act(gate(x)) * up(x))`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MlpActivation {
    Silu,
    Gelu,
}

/// Local attention in some layers (gemma3): a query at position `i` sees keys at `i - window + 1
/// ..= i` in a layer where `local[layer]` holds; those layers use their own RoPE base.
#[derive(Clone, Debug, PartialEq)]
pub struct SlidingWindow {
    pub window: usize,
    pub local: Vec<bool>,
    pub rope_base: f32,
}

/// Hyper-parameters and architecture features of a model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    /// Model width (`embedding_length`).
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    /// Width of each attention head (`attention.key_length`, else `dim / n_heads`).
    pub head_dim: usize,
    pub ffn_dim: usize,
    /// Dimensions of each head that RoPE rotates.
    pub n_rot: usize,
    pub rope_base: f32,
    pub rope: RopeLayout,
    pub rms_eps: f32,
    /// Training context length.
    pub context_length: usize,
    pub mlp: MlpActivation,
    /// RMSNorm of each query and key head before RoPE (`attn_q_norm`, `attn_k_norm`).
    pub qk_norm: bool,
    /// RMSNorm of the attention and MLP outputs before their residual adds
    /// (`post_attention_norm`, `post_ffw_norm`).
    pub post_norms: bool,
    /// Factor on the token embeddings (√dim for gemma).
    pub embedding_scale: Option<f32>,
    /// Factor on `q·k` in attention.
    pub attention_scale: f32,
    /// Whether the factor multiplies the queries (in f32, before they are rounded to f16 for
    /// the dot products with the f16 keys) rather than the scores: gemma3's graph does the
    /// former, and a query value small enough to become an f16 subnormal rounds differently.
    pub scale_queries: bool,
    pub sliding_window: Option<SlidingWindow>,
}

/// Upper bounds on what a file may claim, so a lying header cannot make us allocate terabytes.
const MAX_DIM: u64 = 1 << 16;
const MAX_LAYERS: u64 = 1 << 10;
const MAX_VOCAB: u64 = 1 << 22;

impl ModelConfig {
    pub fn from_gguf(g: &Gguf) -> Result<Self, ModelError> {
        let architecture = Architecture::from_name(g.get_str("general.architecture")?)?;
        let keys = Keys { g, arch: architecture.name() };
        let dim = keys.int("embedding_length", MAX_DIM)?;
        let n_heads = keys.int("attention.head_count", MAX_DIM)?;
        let n_kv_heads = keys.int_or("attention.head_count_kv", MAX_DIM, n_heads)?;
        if n_heads % n_kv_heads != 0 {
            return Err(ModelError::BadConfig {
                key: keys.key("attention.head_count_kv"),
                value: format!("{n_kv_heads} (heads {n_heads})"),
                why: "the heads must be a multiple of the kv heads",
            });
        }
        let head_dim = match keys.has("attention.key_length") {
            true => keys.int("attention.key_length", MAX_DIM)?,
            false if dim % n_heads == 0 => dim / n_heads,
            false => {
                return Err(ModelError::BadConfig {
                    key: keys.key("attention.head_count"),
                    value: format!("{n_heads} (width {dim})"),
                    why: "the heads must divide the width",
                });
            }
        };
        if keys.int_or("attention.value_length", MAX_DIM, head_dim)? != head_dim {
            return Err(ModelError::BadConfig {
                key: keys.key("attention.value_length"),
                value: keys.int("attention.value_length", MAX_DIM)?.to_string(),
                why: "values as wide as keys are supported only",
            });
        }
        let n_rot = keys.int_or("rope.dimension_count", head_dim as u64, head_dim)?;
        if n_rot % 2 != 0 {
            return Err(ModelError::BadConfig {
                key: keys.key("rope.dimension_count"),
                value: n_rot.to_string(),
                why: "must be even",
            });
        }
        let n_layers = keys.int("block_count", MAX_LAYERS)?;
        let rope_base = keys.float("rope.freq_base", 10_000.0)?;
        let mut config = Self {
            architecture,
            vocab_size: vocab_size(g)?,
            dim,
            n_layers,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_dim: keys.int("feed_forward_length", MAX_DIM * 4)?,
            n_rot,
            rope_base,
            rope: RopeLayout::Normal,
            rms_eps: keys.float("attention.layer_norm_rms_epsilon", 1e-5)?,
            context_length: keys.int("context_length", 1 << 24)?,
            mlp: MlpActivation::Silu,
            qk_norm: false,
            post_norms: false,
            embedding_scale: None,
            attention_scale: 1.0 / (head_dim as f32).sqrt(),
            scale_queries: false,
            sliding_window: None,
        };
        match architecture {
            Architecture::Llama => {}
            // llama.cpp `llm_build_qwen2`: llama with NeoX RoPE (and q/k/v biases, which any
            // architecture loads when the file has them).
            Architecture::Qwen2 => config.rope = RopeLayout::Neox,
            // llama.cpp `llama_model_gemma3`.
            Architecture::Gemma3 => {
                config.rope = RopeLayout::Neox;
                config.mlp = MlpActivation::Gelu;
                config.qk_norm = true;
                config.post_norms = true;
                config.embedding_scale = Some((dim as f32).sqrt());
                config.scale_queries = true;
                // The 27B model scales by the width per head; every other size by the head width.
                if n_layers == 62 {
                    config.attention_scale = 1.0 / ((dim / n_heads) as f32).sqrt();
                }
                config.sliding_window = gemma3_window(&keys, n_layers)?;
            }
        }
        Ok(config)
    }

    /// Width of all query heads together.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Width of all key (or value) heads together.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// The first cache position a query at `pos` attends to in `layer`.
    pub fn first_visible(&self, layer: usize, pos: usize) -> usize {
        match &self.sliding_window {
            Some(w) if w.local[layer] => (pos + 1).saturating_sub(w.window),
            _ => 0,
        }
    }

    /// The RoPE base of `layer`.
    pub fn rope_base_of(&self, layer: usize) -> f32 {
        match &self.sliding_window {
            Some(w) if w.local[layer] => w.rope_base,
            _ => self.rope_base,
        }
    }
}

/// Gemma 3's interleaved attention: a window of `attention.sliding_window` positions in every
/// layer but each `sliding_window_pattern`-th (6 unless the file says), with RoPE base
/// `rope.freq_base_swa` (10 000 unless the file says) in the local layers.
fn gemma3_window(keys: &Keys<'_>, n_layers: usize) -> Result<Option<SlidingWindow>, ModelError> {
    let window = keys.int_or("attention.sliding_window", 1 << 24, 0)?;
    if window == 0 {
        return Ok(None);
    }
    let pattern_key = keys.key("attention.sliding_window_pattern");
    let local = match keys.g.metadata.get(&pattern_key) {
        // Per layer, as newer converters write it.
        Some(Value::Array(flags)) if flags.len() == n_layers => {
            flags.iter().map(|f| matches!(f, Value::Bool(true))).collect()
        }
        Some(Value::Array(flags)) => {
            return Err(ModelError::BadConfig {
                key: pattern_key,
                value: format!("{} flags", flags.len()),
                why: "needs one flag per layer",
            });
        }
        _ => {
            let period = keys.int_or("attention.sliding_window_pattern", MAX_LAYERS, 6)?;
            (0..n_layers).map(|layer| layer % period < period - 1).collect()
        }
    };
    Ok(Some(SlidingWindow { window, local, rope_base: keys.float("rope.freq_base_swa", 10_000.0)? }))
}

/// The vocabulary size: the length of `tokenizer.ggml.tokens`.
fn vocab_size(g: &Gguf) -> Result<usize, ModelError> {
    match g.get("tokenizer.ggml.tokens")? {
        Value::Array(tokens) if !tokens.is_empty() && tokens.len() as u64 <= MAX_VOCAB => Ok(tokens.len()),
        other => Err(ModelError::BadConfig {
            key: "tokenizer.ggml.tokens".into(),
            value: other.type_name().into(),
            why: "expected a non-empty array of token strings",
        }),
    }
}

/// Reads `{arch}.{key}` metadata, checked.
struct Keys<'a> {
    g: &'a Gguf,
    arch: &'static str,
}

impl Keys<'_> {
    fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.arch)
    }

    fn has(&self, key: &str) -> bool {
        self.g.metadata.contains_key(&self.key(key))
    }

    /// A positive integer of at most `max`.
    fn int(&self, key: &str, max: u64) -> Result<usize, ModelError> {
        let key = self.key(key);
        let v = self.g.get_u64(&key)?;
        if v == 0 || v > max {
            return Err(ModelError::BadConfig { key, value: v.to_string(), why: "out of range" });
        }
        Ok(v as usize)
    }

    fn int_or(&self, key: &str, max: u64, default: usize) -> Result<usize, ModelError> {
        if self.has(key) { self.int(key, max) } else { Ok(default) }
    }

    /// A positive finite number.
    fn float(&self, key: &str, default: f64) -> Result<f32, ModelError> {
        let key = self.key(key);
        let v = if self.g.metadata.contains_key(&key) { self.g.get_f64(&key)? } else { default };
        if !(v.is_finite() && v > 0.0) {
            return Err(ModelError::BadConfig { key, value: v.to_string(), why: "must be a positive number" });
        }
        Ok(v as f32)
    }
}
