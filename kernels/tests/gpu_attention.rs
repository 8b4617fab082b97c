//! The KV cache and attention kernels (`wgsl/attention.wgsl`) against their CPU twin
//! [`attend_head`] and an f64 reference, natively on lavapipe and in Chromium on WebGPU.
//!
//! Tolerances, as multiples of the largest |v| in the cache:
//! - against the f64 reference (same f16 cache, query rounded to f16, exact softmax): 2e-5,
//!   room for f32 sums and `exp`; one position too many or too few moves the output by about
//!   its weight (≥ 1/2048 of |v| here), far more than that.
//! - against `attend_head`: 1e-3, as the twin rounds each softmax weight to f16 (relative error
//!   up to 2^-11, so up to 4.9e-4 of max |v| in all) where the GPU keeps f32.
//!
//! The kv store is checked to within one f16 ulp of `half::f16::from_f32`: WGSL lets
//! `pack2x16float` round to either neighbour (lavapipe and SwiftShader round to nearest even:
//! bit-exact, ties included).

mod common;

use common::random_values;
use half::f16;
use hearth_kernels::KernelError;
use hearth_kernels::cpu::{KvHead, attend_head};
use hearth_kernels::gpu::{AttentionSpec, GpuBuffer, GpuContext, GpuOp, Step, StepBuffer};

const TOL_EXACT: f64 = 2e-5;
const TOL_TWIN: f64 = 1e-3;
/// Written over `out` before each step: values the step must leave alone stay this.
const SENTINEL: f32 = 1234.5;

/// One layer's attention on the device: caches, activations and the three ops of a step.
struct Layer {
    spec: AttentionSpec,
    max_tokens: u32,
    step: StepBuffer,
    q: GpuBuffer,
    k_src: GpuBuffer,
    v_src: GpuBuffer,
    out: GpuBuffer,
    k_cache: GpuBuffer,
    v_cache: GpuBuffer,
    store_k: GpuOp,
    store_v: GpuOp,
    attn: GpuOp,
}

impl Layer {
    fn new(ctx: &GpuContext, n_heads: u32, n_kv_heads: u32, head_dim: u32, n_ctx: u32, max_tokens: u32) -> Self {
        Self::windowed(ctx, n_heads, n_kv_heads, head_dim, n_ctx, max_tokens, None)
    }

    /// A layer whose queries see only the last `window` positions, if given.
    fn windowed(
        ctx: &GpuContext,
        n_heads: u32,
        n_kv_heads: u32,
        head_dim: u32,
        n_ctx: u32,
        max_tokens: u32,
        window: Option<u32>,
    ) -> Self {
        let scale = 1.0 / (head_dim as f32).sqrt();
        let spec = AttentionSpec { n_heads, n_kv_heads, head_dim, scale, n_ctx, window };
        let (dim, kv_dim) = ((n_heads * head_dim) as usize, n_kv_heads * head_dim);
        let tokens = max_tokens as usize;
        let step = ctx.step_buffer();
        let q = ctx.buffer("q", tokens * dim).unwrap();
        let out = ctx.buffer("out", tokens * dim).unwrap();
        let k_src = ctx.buffer("k", tokens * kv_dim as usize).unwrap();
        let v_src = ctx.buffer("v", tokens * kv_dim as usize).unwrap();
        let k_cache = ctx.kv_cache("k cache", n_ctx, kv_dim).unwrap();
        let v_cache = ctx.kv_cache("v cache", n_ctx, kv_dim).unwrap();
        let store_k = ctx.op_kv_store(&k_src, &k_cache, kv_dim, &step).unwrap();
        let store_v = ctx.op_kv_store(&v_src, &v_cache, kv_dim, &step).unwrap();
        let attn = ctx.op_attention(&q, &k_cache, &v_cache, &out, spec, &step).unwrap();
        Self { spec, max_tokens, step, q, k_src, v_src, out, k_cache, v_cache, store_k, store_v, attn }
    }

    fn dim(&self) -> usize {
        (self.spec.n_heads * self.spec.head_dim) as usize
    }

    fn kv_dim(&self) -> u32 {
        self.spec.n_kv_heads * self.spec.head_dim
    }

    /// Random keys and values at positions `0..len` (one kv-store step of `len` tokens), as
    /// earlier steps would have left them.
    fn history(&self, ctx: &GpuContext, len: u32, seed: u64) {
        let n = len as usize * self.kv_dim() as usize;
        let k = ctx.buffer_from("history k", &random_values(n, seed, 2.0)).unwrap();
        let v = ctx.buffer_from("history v", &random_values(n, seed + 1, 1.0)).unwrap();
        let store_k = ctx.op_kv_store(&k, &self.k_cache, self.kv_dim(), &self.step).unwrap();
        let store_v = ctx.op_kv_store(&v, &self.v_cache, self.kv_dim(), &self.step).unwrap();
        ctx.run(&self.step, Step { n_tokens: len, pos: 0 }, &[&store_k, &store_v]).unwrap();
    }

    /// One step of `n_tokens` random tokens at `pos`: stores their K/V, attends, and checks
    /// the output against the twin and the f64 reference, the stored K/V against
    /// `f16::from_f32`, and that `out` past the step's tokens is untouched.
    async fn check_step(&self, ctx: &GpuContext, n_tokens: u32, pos: u32, seed: u64) {
        let what = format!(
            "{}/{} heads of {}, window {:?}, {n_tokens} tokens at pos {pos}",
            self.spec.n_heads, self.spec.n_kv_heads, self.spec.head_dim, self.spec.window
        );
        let (dim, kv_dim, hd) = (self.dim(), self.kv_dim() as usize, self.spec.head_dim as usize);
        let n = n_tokens as usize;
        let q = random_values(n * dim, seed, 2.0);
        let k = random_values(n * kv_dim, seed + 1, 2.0);
        let v = random_values(n * kv_dim, seed + 2, 1.0);
        ctx.write(&self.q, 0, &q).unwrap();
        ctx.write(&self.k_src, 0, &k).unwrap();
        ctx.write(&self.v_src, 0, &v).unwrap();
        ctx.write(&self.out, 0, &vec![SENTINEL; self.max_tokens as usize * dim]).unwrap();
        let step = Step { n_tokens, pos };
        ctx.run(&self.step, step, &[&self.store_k, &self.store_v, &self.attn]).unwrap();

        let got = ctx.read::<f32>(&self.out, 0..self.max_tokens as usize * dim).await.unwrap();
        let len = (pos as usize + n) * kv_dim;
        let k_cache = read_f16(ctx, &self.k_cache, len).await;
        let v_cache = read_f16(ctx, &self.v_cache, len).await;
        let stored = pos as usize * kv_dim..len;
        check_f16(&what, &k, &k_cache[stored.clone()]);
        check_f16(&what, &v, &v_cache[stored]);
        assert!(got[n * dim..].iter().all(|&x| x == SENTINEL), "{what}: wrote past its tokens");

        let group = (self.spec.n_heads / self.spec.n_kv_heads) as usize;
        let vmax = v_cache.iter().map(|v| v.to_f32().abs()).fold(0.0f32, f32::max) as f64;
        let (mut err_twin, mut err_exact) = (0.0f64, 0.0f64);
        let mut twin = vec![0.0f32; hd];
        for t in 0..n {
            // Positions first..=p, the cache slices starting at the first (as the model does).
            let p = pos as usize + t;
            let first = self.spec.window.map_or(0, |w| (p + 1).saturating_sub(w as usize));
            let (k_seen, v_seen) = (&k_cache[first * kv_dim..], &v_cache[first * kv_dim..]);
            for h in 0..self.spec.n_heads as usize {
                let kv = KvHead { k: k_seen, v: v_seen, stride: kv_dim, offset: h / group * hd };
                let q_head = &q[t * dim + h * hd..][..hd];
                let attended = p + 1 - first;
                attend_head(q_head, kv, attended, self.spec.scale, &mut twin);
                let exact = reference(q_head, kv, attended, self.spec.scale);
                let got = &got[t * dim + h * hd..][..hd];
                for d in 0..hd {
                    let g = got[d] as f64;
                    let (et, ee) = ((g - twin[d] as f64).abs(), (g - exact[d]).abs());
                    assert!(
                        et <= TOL_TWIN * vmax && ee <= TOL_EXACT * vmax,
                        "{what}: token {t} head {h} dim {d}: gpu {g}, twin {}, f64 {}",
                        twin[d],
                        exact[d]
                    );
                    err_twin = err_twin.max(et / vmax);
                    err_exact = err_exact.max(ee / vmax);
                }
            }
        }
        eprintln!("{what}: largest error / max|v|: {err_twin:.2e} vs twin, {err_exact:.2e} vs f64");
    }
}

/// Values `0..len` of an f16 cache.
async fn read_f16(ctx: &GpuContext, cache: &GpuBuffer, len: usize) -> Vec<f16> {
    let words = ctx.read::<u32>(cache, 0..len / 2).await.unwrap();
    words.iter().flat_map(|w| [f16::from_bits(*w as u16), f16::from_bits((w >> 16) as u16)]).collect()
}

/// `got` is `want` rounded to f16, to within one ulp (WGSL lets `pack2x16float` round either
/// way); finite values only.
fn check_f16(what: &str, want: &[f32], got: &[f16]) {
    assert_eq!(want.len(), got.len());
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        let exact = f16::from_f32(*w);
        let ulps = (exact.to_bits() as i32 - g.to_bits() as i32).abs();
        // Same sign and at most one step apart (±0 aside).
        let ok = ulps <= 1 || (exact.to_f32() == 0.0 && g.to_f32() == 0.0);
        assert!(ok, "{what}: value {i}: {w} stored as {g}, f16::from_f32 gives {exact}");
    }
}

/// Attention in f64 over the same f16 cache, the query rounded to f16 as the kernels do.
fn reference(q: &[f32], kv: KvHead<'_>, len: usize, scale: f32) -> Vec<f64> {
    let hd = q.len();
    let q: Vec<f64> = q.iter().map(|&x| f16::from_f32(x).to_f64()).collect();
    let scores: Vec<f64> = (0..len)
        .map(|j| {
            let key = &kv.k[j * kv.stride + kv.offset..][..hd];
            key.iter().zip(&q).map(|(k, q)| k.to_f64() * q).sum::<f64>() * scale as f64
        })
        .collect();
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let sum: f64 = weights.iter().sum();
    let mut out = vec![0.0f64; hd];
    for (j, w) in weights.iter().enumerate() {
        let value = &kv.v[j * kv.stride + kv.offset..][..hd];
        for (o, v) in out.iter_mut().zip(value) {
            *o += w / sum * v.to_f64();
        }
    }
    out
}

/// SmolLM2-135M's shape: 9 query heads over 3 kv heads of 64, 2048 positions.
fn smollm2(ctx: &GpuContext, max_tokens: u32) -> Layer {
    Layer::new(ctx, 9, 3, 64, 2048, max_tokens)
}

/// A step's keys and values land at `pos..pos + n_tokens` as f16, and nothing else is written
/// (positions around them stay zero; a ragged number of pairs per token).
async fn check_kv_store_rounds_to_f16(ctx: &GpuContext) {
    let (kv_dim, n_ctx, max_tokens) = (6u32, 8u32, 4usize);
    let step = ctx.step_buffer();
    let mut src = random_values(max_tokens * kv_dim as usize, 7, 3.0);
    // Ties between two f16 (round to even), a value just above a tie, large and tiny values.
    src[..6].copy_from_slice(&[1.0 + 2f32.powi(-11), 1.0 + 3.0 * 2f32.powi(-11), 2049.0, 2051.0, 60000.0, -1e-3]);
    let src_buf = ctx.buffer_from("src", &src).unwrap();
    let cache = ctx.kv_cache("cache", n_ctx, kv_dim).unwrap();
    let store = ctx.op_kv_store(&src_buf, &cache, kv_dim, &step).unwrap();
    ctx.run(&step, Step { n_tokens: 2, pos: 3 }, &[&store]).unwrap();
    let got = read_f16(ctx, &cache, (n_ctx * kv_dim) as usize).await;
    let d = kv_dim as usize;
    check_f16("kv store", &src[..2 * d], &got[3 * d..5 * d]);
    assert!(got[..3 * d].iter().chain(&got[5 * d..]).all(|x| x.to_bits() == 0), "wrote outside 3..5: {got:?}");
    let exact = got[3 * d..5 * d].iter().zip(&src).filter(|(g, s)| **g == f16::from_f32(**s)).count();
    eprintln!("kv store: {exact} of {} values bit-exact with f16::from_f32", 2 * d);
}

async fn check_decode_at_pos_0_and_1(ctx: &GpuContext) {
    let layer = smollm2(ctx, 1);
    layer.check_step(ctx, 1, 0, 11).await;
    layer.check_step(ctx, 1, 1, 12).await;
}

/// Long positions: 24 tiles in 12 splits of two (pos 1500), 32 in 16 (the last position). The
/// cache holds keys past the position too, which must be ignored.
async fn check_decode_at_long_positions(ctx: &GpuContext) {
    let layer = smollm2(ctx, 1);
    layer.history(ctx, 2048, 20);
    layer.check_step(ctx, 1, 1500, 21).await;
    layer.check_step(ctx, 1, 2047, 22).await;
}

async fn check_prefill_from_pos_0(ctx: &GpuContext) {
    let layer = smollm2(ctx, 64);
    for (n, seed) in [(1, 30), (7, 31), (64, 32)] {
        layer.check_step(ctx, n, 0, seed).await;
    }
}

/// Prefill continuing a cache of 100 positions (with stale keys beyond, to be masked).
async fn check_prefill_from_pos_100(ctx: &GpuContext) {
    let layer = smollm2(ctx, 64);
    layer.history(ctx, 300, 40);
    for (n, seed) in [(1, 41), (7, 42), (64, 43)] {
        layer.check_step(ctx, n, 100, seed).await;
    }
}

/// Four query heads sharing one kv head of 256 (gemma-sized heads: prefill tiles of 8).
async fn check_gqa_4_heads_over_1_of_256(ctx: &GpuContext) {
    let layer = Layer::new(ctx, 4, 1, 256, 512, 64);
    layer.check_step(ctx, 64, 0, 50).await;
    layer.check_step(ctx, 7, 100, 51).await;
    layer.check_step(ctx, 1, 300, 52).await;
}

/// Even head sizes that are not powers of two or are tiny: 48 (three heads, no grouping) and 2.
async fn check_odd_head_sizes(ctx: &GpuContext) {
    let layer = Layer::new(ctx, 3, 3, 48, 256, 40);
    layer.history(ctx, 100, 60);
    layer.check_step(ctx, 40, 5, 61).await;
    layer.check_step(ctx, 1, 70, 62).await;
    let layer = Layer::new(ctx, 2, 1, 2, 256, 40);
    layer.history(ctx, 150, 63);
    layer.check_step(ctx, 37, 100, 64).await;
    layer.check_step(ctx, 1, 140, 65).await;
}

/// Sliding windows (gemma3's local layers): decode and prefill before the window fills, as it
/// slides past tile boundaries, and with windows shorter than a tile or a prefill block.
async fn check_sliding_window(ctx: &GpuContext) {
    let layer = Layer::windowed(ctx, 4, 1, 256, 1024, 64, Some(512));
    layer.history(ctx, 1024, 80);
    layer.check_step(ctx, 64, 0, 81).await;
    layer.check_step(ctx, 64, 480, 82).await;
    layer.check_step(ctx, 1, 511, 83).await;
    layer.check_step(ctx, 1, 512, 84).await;
    layer.check_step(ctx, 1, 1000, 85).await;
    layer.check_step(ctx, 37, 700, 86).await;
    let layer = Layer::windowed(ctx, 9, 3, 64, 2048, 64, Some(5));
    layer.history(ctx, 2048, 87);
    layer.check_step(ctx, 1, 3, 88).await;
    layer.check_step(ctx, 1, 130, 89).await;
    layer.check_step(ctx, 64, 200, 90).await;
    layer.check_step(ctx, 1, 2047, 91).await;
    // A window of one: each query sees only itself.
    let layer = Layer::windowed(ctx, 2, 1, 2, 256, 40, Some(1));
    layer.history(ctx, 256, 92);
    layer.check_step(ctx, 40, 100, 93).await;
    layer.check_step(ctx, 1, 255, 94).await;
}

/// A step of fewer tokens than the buffers hold writes only its own rows (checked in every
/// step); more than they hold is refused.
async fn check_step_with_fewer_tokens_than_max(ctx: &GpuContext) {
    let layer = smollm2(ctx, 16);
    layer.history(ctx, 40, 70);
    layer.check_step(ctx, 5, 20, 71).await;
    layer.check_step(ctx, 16, 24, 72).await;
    let err = ctx.run(&layer.step, Step { n_tokens: 17, pos: 0 }, &[&layer.attn]).unwrap_err();
    assert!(matches!(err, KernelError::TooManyTokens { tokens: 17, max: 16, .. }), "{err}");
}

fn expect_shape_error<T>(result: Result<T, KernelError>, words: &[&str]) {
    let Err(err) = result else { panic!("expected an error naming {words:?}") };
    assert!(matches!(err, KernelError::OpShape { .. }), "{err}");
    let msg = err.to_string();
    for w in words {
        assert!(msg.contains(w), "{msg:?} should name {w:?}");
    }
}

async fn check_bad_inputs_are_refused(ctx: &GpuContext) {
    let step = ctx.step_buffer();
    expect_shape_error(ctx.kv_cache("odd", 16, 7), &["kv_dim 7"]);
    let src = ctx.buffer("src", 64).unwrap();
    let cache = ctx.kv_cache("cache", 16, 8).unwrap();
    expect_shape_error(ctx.op_kv_store(&src, &cache, 7, &step), &["kv_dim 7"]);
    expect_shape_error(ctx.op_kv_store(&src, &cache, 128, &step), &["src of 64"]);

    let spec = AttentionSpec { n_heads: 4, n_kv_heads: 2, head_dim: 4, scale: 0.5, n_ctx: 16, window: None };
    let q = ctx.buffer("q", 32).unwrap();
    let out = ctx.buffer("out", 32).unwrap();
    let attn = |spec, q: &GpuBuffer, k: &GpuBuffer, out: &GpuBuffer| ctx.op_attention(q, k, &cache, out, spec, &step);
    assert!(attn(spec, &q, &cache, &out).is_ok());
    expect_shape_error(attn(AttentionSpec { n_kv_heads: 3, ..spec }, &q, &cache, &out), &["n_heads 4", "n_kv_heads 3"]);
    expect_shape_error(attn(AttentionSpec { n_kv_heads: 0, ..spec }, &q, &cache, &out), &["n_kv_heads 0"]);
    expect_shape_error(attn(AttentionSpec { head_dim: 3, ..spec }, &q, &cache, &out), &["head_dim 3"]);
    expect_shape_error(attn(AttentionSpec { head_dim: 258, ..spec }, &q, &cache, &out), &["head_dim 258"]);
    expect_shape_error(attn(AttentionSpec { window: Some(0), ..spec }, &q, &cache, &out), &["window of 0"]);
    let small_cache = ctx.kv_cache("small", 15, 8).unwrap();
    expect_shape_error(attn(spec, &q, &small_cache, &out), &["k_cache", "60 values", "n_ctx 16"]);
    let tiny_q = ctx.buffer("tiny q", 15).unwrap();
    expect_shape_error(attn(spec, &tiny_q, &cache, &out), &["q has 15"]);
    let short_out = ctx.buffer("short out", 31).unwrap();
    expect_shape_error(attn(spec, &q, &cache, &short_out), &["out has 31"]);
    expect_shape_error(attn(spec, &q, &cache, &q), &["different buffers"]);
}

gpu_tests! {
    kv_store_rounds_to_f16 => check_kv_store_rounds_to_f16,
    decode_at_pos_0_and_1 => check_decode_at_pos_0_and_1,
    decode_at_long_positions => check_decode_at_long_positions,
    prefill_from_pos_0 => check_prefill_from_pos_0,
    prefill_from_pos_100 => check_prefill_from_pos_100,
    gqa_4_heads_over_1_of_256 => check_gqa_4_heads_over_1_of_256,
    odd_head_sizes => check_odd_head_sizes,
    sliding_window => check_sliding_window,
    step_with_fewer_tokens_than_max => check_step_with_fewer_tokens_than_max,
    bad_inputs_are_refused => check_bad_inputs_are_refused,
}
