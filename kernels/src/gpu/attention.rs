//! The KV cache on the device and causal attention over it (`wgsl/attention.wgsl`): decode
//! splits the KV length across workgroups and reduces their partial softmaxes; prefill is
//! tiled and causal. CPU twin: [`crate::cpu::attend_head`].

use super::GpuContext;
use super::tensor::{Dispatch, GpuBuffer, GpuOp, Step, StepBuffer, bind, pipeline, shader, uniform};
use crate::KernelError;

/// Positions per decode tile (one per invocation of `attn_decode`); must match `DECODE_TILE`.
const DECODE_TILE: u32 = 64;
/// The most workgroups a head's KV length is split across while decoding (see
/// [`decode_splits`]).
const MAX_SPLITS: u32 = 16;
/// Prefill tiles: `bq * head_dim / 2` and `bk * head_dim / 2` words each fit `TILE_WORDS`
/// (the shader's `TILE_WORDS`, `BQ_MAX`, `BK_MAX`).
const TILE_WORDS: u32 = 1024;
const BQ_MAX: u32 = 32;
const BK_MAX: u32 = 16;
/// Largest head the kernels hold (128 f16 pairs in workgroup memory).
const MAX_HEAD_DIM: u32 = 256;
/// Workgroup size of `kv_store`.
const STORE_WG: u32 = 64;

/// Uniforms of `kv_store`, field for field.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct StoreParams {
    kv_dim: u32,
    n_ctx: u32,
    _pad: [u32; 2],
}

/// Uniforms of the attention entry points (`AttnParams`), field for field.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AttnParams {
    n_heads: u32,
    group: u32,
    head_dim: u32,
    n_ctx: u32,
    scale: f32,
    max_splits: u32,
    bq: u32,
    bk: u32,
    /// Positions a query sees (itself and those before), 0 for all.
    window: u32,
    _pad: [u32; 3],
}
const _: () = assert!(size_of::<AttnParams>() == 48 && size_of::<StoreParams>() == 16);

pub(crate) struct AttentionKernels {
    kv_store: wgpu::ComputePipeline,
    decode: wgpu::ComputePipeline,
    reduce: wgpu::ComputePipeline,
    prefill: wgpu::ComputePipeline,
}

impl AttentionKernels {
    /// Builds the pipelines. The cache is read with `unpack2x16float` and all math is f32, so
    /// there is one path whether or not the device has `shader-f16`.
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        let module = shader(device, "attention.wgsl", include_str!("../../wgsl/attention.wgsl"));
        Self {
            kv_store: pipeline(device, &module, "kv_store"),
            decode: pipeline(device, &module, "attn_decode"),
            reduce: pipeline(device, &module, "attn_reduce"),
            prefill: pipeline(device, &module, "attn_prefill"),
        }
    }
}

/// The most splits a decode step of a cache of `n_ctx` positions takes: [`MAX_SPLITS`], or
/// fewer when the cache has fewer tiles. The partials buffer holds this many per head.
fn max_splits(n_ctx: u32) -> u32 {
    n_ctx.div_ceil(DECODE_TILE).clamp(1, MAX_SPLITS)
}

/// The first position a query at `pos` sees with a sliding `window` (0: no window), as the
/// shader's `first_visible`.
fn first_visible(pos: u32, window: u32) -> u32 {
    match window {
        0 => 0,
        w => pos.saturating_add(1).saturating_sub(w),
    }
}

/// How a decode step at `pos` splits the KV length (as the shader's `tiles_per_split` and
/// `attn_reduce`): the tiles from the one holding the first visible position on,
/// `ceil(tiles / max_splits)` of them per workgroup; returns the workgroups.
fn decode_splits(pos: u32, n_ctx: u32, max_splits: u32, window: u32) -> u32 {
    let len = pos.saturating_add(1).min(n_ctx);
    let tiles = len.div_ceil(DECODE_TILE) - first_visible(pos, window).min(len - 1) / DECODE_TILE;
    tiles.div_ceil(tiles.div_ceil(max_splits))
}

/// Prefill tile sizes for a head of `head_dim`: query tokens per workgroup, keys per tile.
fn prefill_tiles(head_dim: u32) -> (u32, u32) {
    let pairs = head_dim / 2;
    ((TILE_WORDS / pairs).min(BQ_MAX), (TILE_WORDS / pairs).min(BK_MAX))
}

fn shape_error(op: &'static str, why: String) -> KernelError {
    KernelError::OpShape { op, why }
}

/// Shape of one layer's attention.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionSpec {
    pub n_heads: u32,
    /// Key/value heads; query head h reads kv head `h / (n_heads / n_kv_heads)`.
    pub n_kv_heads: u32,
    pub head_dim: u32,
    /// Multiplies q·k before the softmax (1/sqrt(head_dim) for llama).
    pub scale: f32,
    /// Positions the cache holds.
    pub n_ctx: u32,
    /// Sliding-window attention: a query at position p sees only `p + 1 - window ..= p`
    /// (gemma3's local layers). `None`: every position up to its own.
    pub window: Option<u32>,
}

impl GpuContext {
    /// A zeroed KV cache for one layer's keys or values: `n_ctx` positions of `kv_dim` values
    /// as f16 (pairs packed in u32, as llama.cpp's default f16 cache).
    pub fn kv_cache(&self, label: &str, n_ctx: u32, kv_dim: u32) -> Result<GpuBuffer, KernelError> {
        if kv_dim == 0 || !kv_dim.is_multiple_of(2) || n_ctx == 0 {
            return Err(shape_error(
                "kv_cache",
                format!("kv_dim {kv_dim} must be even and non-zero, n_ctx {n_ctx} non-zero (f16 pairs per u32)"),
            ));
        }
        self.buffer(label, n_ctx as usize * (kv_dim / 2) as usize)
    }

    /// Stores `src` (tokens of `kv_dim` f32 values) into `cache` at positions
    /// `step.pos + t`, rounded to f16.
    ///
    /// `pack2x16float` rounds (to nearest even on lavapipe and SwiftShader; WGSL allows either
    /// neighbour). Positions past the cache are skipped: a [`GpuOp`] cannot fail mid-step, so
    /// keeping `pos + n_tokens` within `n_ctx` is the caller's job.
    pub fn op_kv_store(
        &self,
        src: &GpuBuffer,
        cache: &GpuBuffer,
        kv_dim: u32,
        step: &StepBuffer,
    ) -> Result<GpuOp, KernelError> {
        const OP: &str = "kv_store";
        if kv_dim == 0 || !kv_dim.is_multiple_of(2) {
            return Err(shape_error(OP, format!("kv_dim {kv_dim} must be even and non-zero")));
        }
        let pairs = (kv_dim / 2) as usize;
        let n_ctx = cache.len() / pairs;
        let max_tokens = src.len() / kv_dim as usize;
        if n_ctx == 0 || max_tokens == 0 {
            return Err(shape_error(
                OP,
                format!(
                    "cache of {} values holds no position of {pairs} pairs, or src of {} values no token of {kv_dim}",
                    cache.len(),
                    src.len()
                ),
            ));
        }
        let max_groups = self.adapter().max_compute_workgroups_per_dimension;
        let groups_x = (pairs as u32).div_ceil(STORE_WG);
        if groups_x > max_groups || max_tokens > max_groups as usize {
            return Err(shape_error(
                OP,
                format!("{groups_x} workgroups per token or {max_tokens} tokens exceed {max_groups} per dimension"),
            ));
        }
        let params = StoreParams { kv_dim, n_ctx: n_ctx.min(u32::MAX as usize) as u32, _pad: [0; 2] };
        let params = uniform(&self.device, "kv_store params", &params);
        let pipeline = self.attention.kv_store.clone();
        let bind_group = bind(
            &self.device,
            "kv_store",
            &pipeline,
            &[step.buffer.as_entire_binding(), params.as_entire_binding(), src.binding(), cache.binding()],
        );
        let grid = Box::new(move |s: Step| [groups_x, s.n_tokens, 1]);
        Ok(GpuOp {
            label: OP,
            dispatches: vec![Dispatch { pipeline, bind_group, grid }],
            max_tokens: max_tokens as u32,
        })
    }

    /// Causal attention: for token t (position p = step.pos + t) and query head h,
    /// `out[t][h] = Σ_{first ≤ j ≤ p} softmax_j(scale · q[t][h] · k[j][kv(h)]) · v[j][kv(h)]`,
    /// `first` 0 or, with a sliding window, `p + 1 - window`.
    /// `q` and `out` hold tokens of `n_heads * head_dim` values.
    ///
    /// One token (decode) splits each head's positions across workgroups and reduces their
    /// partial softmaxes in a second dispatch; more (prefill) runs tiles of query tokens
    /// against K/V tiles up to the diagonal. The query is rounded to f16 as the twin does; the
    /// rest is f32 (the twin also rounds the softmax weights to f16: outputs differ by up to
    /// about 5e-4 of the largest value). Positions are clamped to `n_ctx`.
    pub fn op_attention(
        &self,
        q: &GpuBuffer,
        k_cache: &GpuBuffer,
        v_cache: &GpuBuffer,
        out: &GpuBuffer,
        spec: AttentionSpec,
        step: &StepBuffer,
    ) -> Result<GpuOp, KernelError> {
        const OP: &str = "attention";
        let AttentionSpec { n_heads, n_kv_heads, head_dim, scale, n_ctx, window } = spec;
        let window = match window {
            Some(0) => return Err(shape_error(OP, "a sliding window of 0 positions sees nothing".into())),
            Some(w) => w,
            None => 0,
        };
        if n_heads == 0 || n_kv_heads == 0 || !n_heads.is_multiple_of(n_kv_heads) {
            return Err(shape_error(
                OP,
                format!("n_heads {n_heads} must be a non-zero multiple of n_kv_heads {n_kv_heads}"),
            ));
        }
        if head_dim == 0 || !head_dim.is_multiple_of(2) || head_dim > MAX_HEAD_DIM {
            return Err(shape_error(OP, format!("head_dim {head_dim} must be even, from 2 to {MAX_HEAD_DIM}")));
        }
        if n_ctx == 0 {
            return Err(shape_error(OP, "n_ctx 0: the cache holds no position".into()));
        }
        let dim = n_heads as usize * head_dim as usize;
        let cache_len = n_ctx as usize * (n_kv_heads * head_dim / 2) as usize;
        for (name, cache) in [("k_cache", k_cache), ("v_cache", v_cache)] {
            if cache.len() < cache_len {
                return Err(shape_error(
                    OP,
                    format!(
                        "{name} has {} values, fewer than n_ctx {n_ctx} x {n_kv_heads} kv heads x {head_dim} / 2 = {cache_len}",
                        cache.len()
                    ),
                ));
            }
        }
        let max_tokens = q.len() / dim;
        if max_tokens == 0 {
            return Err(shape_error(OP, format!("q has {} values, less than one token of {dim}", q.len())));
        }
        if out.len() < max_tokens * dim {
            return Err(shape_error(
                OP,
                format!("out has {} values, fewer than q's {max_tokens} tokens x {dim}", out.len()),
            ));
        }
        if q.buffer == out.buffer {
            return Err(shape_error(OP, "q and out must be different buffers".into()));
        }
        let (bq, bk) = prefill_tiles(head_dim);
        let max_groups = self.adapter().max_compute_workgroups_per_dimension as usize;
        if n_heads as usize > max_groups || max_tokens.div_ceil(bq as usize) > max_groups {
            return Err(shape_error(
                OP,
                format!("{n_heads} heads or {max_tokens} tokens / {bq} exceed {max_groups} workgroups per dimension"),
            ));
        }
        let max_tokens =
            u32::try_from(max_tokens).map_err(|_| shape_error(OP, format!("{max_tokens} tokens do not fit a u32")))?;

        let max_splits = max_splits(n_ctx);
        let params = AttnParams {
            n_heads,
            group: n_heads / n_kv_heads,
            head_dim,
            n_ctx,
            scale,
            max_splits,
            bq,
            bk,
            window,
            _pad: [0; 3],
        };
        let params = uniform(&self.device, "attention params", &params);
        // Decode partials, per head and split: (max, sum, head_dim unnormalised outputs).
        let partials = self.buffer("attention partials", (n_heads * max_splits) as usize * (head_dim as usize + 2))?;
        let (step_b, params_b) = (step.buffer.as_entire_binding(), params.as_entire_binding());
        let kernels = &self.attention;

        let decode = Dispatch {
            pipeline: kernels.decode.clone(),
            bind_group: bind(
                &self.device,
                "attention decode",
                &kernels.decode,
                &[
                    step_b.clone(),
                    params_b.clone(),
                    q.binding(),
                    k_cache.binding(),
                    v_cache.binding(),
                    partials.binding(),
                ],
            ),
            grid: Box::new(move |s: Step| {
                if s.n_tokens != 1 {
                    return [0; 3];
                }
                [decode_splits(s.pos, n_ctx, max_splits, window), n_heads, 1]
            }),
        };
        let reduce = Dispatch {
            pipeline: kernels.reduce.clone(),
            bind_group: bind(
                &self.device,
                "attention reduce",
                &kernels.reduce,
                &[step_b.clone(), params_b.clone(), partials.binding(), out.binding()],
            ),
            grid: Box::new(move |s: Step| if s.n_tokens == 1 { [n_heads, 1, 1] } else { [0; 3] }),
        };
        let prefill = Dispatch {
            pipeline: kernels.prefill.clone(),
            bind_group: bind(
                &self.device,
                "attention prefill",
                &kernels.prefill,
                &[step_b, params_b, q.binding(), k_cache.binding(), v_cache.binding(), out.binding()],
            ),
            grid: Box::new(move |s: Step| {
                if s.n_tokens < 2 {
                    return [0; 3];
                }
                [s.n_tokens.div_ceil(bq), n_heads, 1]
            }),
        };
        Ok(GpuOp { label: OP, dispatches: vec![decode, reduce, prefill], max_tokens })
    }
}
