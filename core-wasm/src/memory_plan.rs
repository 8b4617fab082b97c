//! What a model needs in memory, from its GGUF header alone, so that a model that cannot fit
//! is refused with the numbers before a byte of its weights is read, and whatever is loaded
//! already stays loaded.
//!
//! The figures are what the engine allocates: the weights as the backend holds them (the
//! file's packing on the CPU; on the GPU the K-quants and Q5_x are repacked to 1.5 bytes a
//! value), the f16 KV cache at the chosen context, and the scratch of one prefill chunk
//! (activations of [`PREFILL_CHUNK`] tokens and the logits), plus the tokenizer's tables.

use std::fmt;

use hearth_kernels::gpu::device_matrix_bytes;
use thiserror::Error;

use crate::engine::Backend;
use crate::gguf::Gguf;
use crate::model::ModelError;
use crate::model::config::ModelConfig;
use crate::model::transformer::PREFILL_CHUNK;

/// Bytes as people read them: "1.67 GB" (decimal, as file managers and `ls -h --si` show).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteCount(pub u64);

impl fmt::Display for ByteCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0 as f64;
        match self.0 {
            0..1_000_000 => write!(f, "{:.0} kB", b / 1e3),
            1_000_000..1_000_000_000 => write!(f, "{:.0} MB", b / 1e6),
            _ => write!(f, "{:.2} GB", b / 1e9),
        }
    }
}

/// A model refused before loading: it needs more than there is.
#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "the model needs {needed} on the {backend} at {n_ctx} positions of context ({weights} of weights, \
     {kv_cache} of KV cache, {scratch} of scratch) but {limit_name} is {available}; {advice}",
    needed = ByteCount(*needed), weights = ByteCount(*weights), kv_cache = ByteCount(*kv_cache),
    scratch = ByteCount(*scratch), available = ByteCount(*available),
    advice = match max_context { Some(n) => format!("at most {n} positions of context would fit"),
        None => "not even its weights fit".to_owned() }
)]
pub struct DoesNotFit {
    pub backend: &'static str,
    pub n_ctx: usize,
    pub needed: u64,
    pub weights: u64,
    pub kv_cache: u64,
    pub scratch: u64,
    /// What the limit is: "this machine's available memory", "the page's wasm32 memory", ...
    pub limit_name: String,
    pub available: u64,
    /// The largest context that would fit (at least 256 positions), if any.
    pub max_context: Option<usize>,
}

/// The bytes a model needs on one backend at one context length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    pub backend: Backend,
    pub n_ctx: usize,
    /// The weights as the backend holds them, with the tokenizer's tables.
    pub weights: u64,
    pub kv_cache: u64,
    pub scratch: u64,
    /// The largest tensor's bytes in the file: what a loader that goes a tensor at a time
    /// (a page loading onto the GPU) holds at once.
    pub largest_tensor: u64,
    /// KV cache bytes per position of context.
    kv_per_position: u64,
}

impl fmt::Display for MemoryPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match self.backend {
            Backend::Cpu => "CPU",
            Backend::Gpu => "GPU",
        };
        write!(
            f,
            "{} on the {backend} at {} positions of context ({} of weights, {} of KV cache, {} of scratch)",
            ByteCount(self.total()),
            self.n_ctx,
            ByteCount(self.weights),
            ByteCount(self.kv_cache),
            ByteCount(self.scratch)
        )
    }
}

/// Contexts smaller than this are not offered as a way to fit a model: a chat would not fit.
const MIN_USEFUL_CONTEXT: usize = 256;

impl MemoryPlan {
    /// The plan for the model `g` describes on `backend` with `n_ctx` positions of context
    /// (clamped to the model's training context, as the engine does).
    pub fn new(g: &Gguf, backend: Backend, n_ctx: usize) -> Result<Self, ModelError> {
        let c = ModelConfig::from_gguf(g)?;
        let n_ctx = n_ctx.clamp(1, c.context_length);
        let mut weights: u64 = 0;
        for t in &g.tensors {
            let bytes = match (backend, t.dims.as_slice()) {
                // 1-D tensors (norms, biases) are held as f32.
                (_, [len]) => len * 4,
                (Backend::Gpu, [cols, rows]) => device_matrix_bytes(t.format, *rows, *cols).unwrap_or(t.size),
                _ => t.size,
            };
            weights = weights.saturating_add(bytes);
        }
        // Token texts, merges and their lookup tables: a few times their size in the file.
        weights = weights.saturating_add(g.data_offset.saturating_mul(4));
        // Keys and values, f16, every layer, every position.
        let kv_per_position = (c.n_layers * c.kv_dim() * 2 * 2) as u64;
        let chunk = PREFILL_CHUNK as u64;
        let widths = (8 * c.dim + c.q_dim() + 2 * c.kv_dim() + 3 * c.ffn_dim) as u64;
        let scratch = chunk * widths * 4 + 2 * c.vocab_size as u64 * 4;
        let largest_tensor = g.tensors.iter().map(|t| t.size).max().unwrap_or(0);
        let kv_cache = kv_per_position * n_ctx as u64;
        Ok(Self { backend, n_ctx, weights, kv_cache, scratch, largest_tensor, kv_per_position })
    }

    pub fn total(&self) -> u64 {
        self.weights.saturating_add(self.kv_cache).saturating_add(self.scratch)
    }

    /// The largest context whose plan fits in `available` bytes, if the weights and scratch
    /// leave room for a useful one ([`MIN_USEFUL_CONTEXT`]); never more than this plan's.
    pub fn max_context(&self, available: u64) -> Option<usize> {
        let room = available.checked_sub(self.weights.saturating_add(self.scratch))?;
        let n = (room / self.kv_per_position.max(1)).min(self.n_ctx as u64) as usize;
        (n >= MIN_USEFUL_CONTEXT.min(self.n_ctx)).then_some(n)
    }

    /// `Ok` if the plan fits in `available` bytes of what `limit_name` names, else the numbers.
    pub fn check(&self, available: u64, limit_name: &str) -> Result<(), DoesNotFit> {
        if self.total() <= available {
            return Ok(());
        }
        Err(DoesNotFit {
            backend: match self.backend {
                Backend::Cpu => "CPU",
                Backend::Gpu => "GPU",
            },
            n_ctx: self.n_ctx,
            needed: self.total(),
            weights: self.weights,
            kv_cache: self.kv_cache,
            scratch: self.scratch,
            limit_name: limit_name.to_owned(),
            available,
            max_context: self.max_context(available),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(weights: u64, kv_per_position: u64, n_ctx: usize) -> MemoryPlan {
        MemoryPlan {
            backend: Backend::Cpu,
            n_ctx,
            weights,
            kv_cache: kv_per_position * n_ctx as u64,
            scratch: 1000,
            largest_tensor: 0,
            kv_per_position,
        }
    }

    #[test]
    fn a_plan_that_does_not_fit_names_both_numbers_and_the_context_that_would() {
        let p = plan(1_600_000_000, 100_000, 4096);
        assert_eq!(p.total(), 1_600_000_000 + 409_600_000 + 1000);
        assert!(p.check(3_000_000_000, "memory").is_ok());
        let e = p.check(1_700_000_000, "this machine's available memory").unwrap_err();
        assert_eq!(e.max_context, Some(999));
        assert_eq!(
            e.to_string(),
            "the model needs 2.01 GB on the CPU at 4096 positions of context (1.60 GB of weights, \
             410 MB of KV cache, 1 kB of scratch) but this machine's available memory is 1.70 GB; \
             at most 999 positions of context would fit"
        );
        assert_eq!(
            p.to_string(),
            "2.01 GB on the CPU at 4096 positions of context (1.60 GB of weights, 410 MB of KV cache, 1 kB of scratch)"
        );
        let e = p.check(1_000_000_000, "memory").unwrap_err();
        assert_eq!(e.max_context, None);
        assert!(e.to_string().ends_with("not even its weights fit"), "{e}");
        // Room for fewer than 256 positions is not offered.
        assert_eq!(p.max_context(1_600_000_000 + 1000 + 255 * 100_000), None);
        assert_eq!(p.max_context(1_600_000_000 + 1000 + 256 * 100_000), Some(256));
    }

    #[test]
    fn byte_counts_read_as_people_write_them() {
        assert_eq!(ByteCount(1_670_000_000).to_string(), "1.67 GB");
        assert_eq!(ByteCount(98_000_000).to_string(), "98 MB");
        assert_eq!(ByteCount(4_294_967_296).to_string(), "4.29 GB");
        assert_eq!(ByteCount(512).to_string(), "1 kB");
    }
}
