//! The layer ops (RMSNorm, RoPE, SwiGLU, GeGLU, residual add, bias, scale) against their CPU twins in
//! `cpu::ops`, on awkward shapes: width 1, odd widths, widths that are not multiples of the
//! 256-wide workgroups, steps of fewer tokens than the buffers hold. Natively on Vulkan
//! (lavapipe) and, in the wasm build, on WebGPU in Chromium.

mod common;

/// Prints a measurement: to stderr natively, to the browser console (shown by the runner
/// with `--nocapture`) on the web.
macro_rules! report {
    ($($t:tt)*) => {{
        #[cfg(target_arch = "wasm32")]
        wasm_bindgen_test::console_log!($($t)*);
        #[cfg(not(target_arch = "wasm32"))]
        eprintln!($($t)*);
    }};
}

use common::random_values;
use hearth_kernels::KernelError;
use hearth_kernels::cpu::ops;
use hearth_kernels::gpu::{GpuBuffer, GpuContext, GpuOp, NormRows, RopeSpec, Step, StepBuffer};

/// Marks values a kernel must not touch.
const UNTOUCHED: f32 = 1234.5;

/// Runs `op` for a step of `n_tokens` at `pos`, then reads `buf[..len]`.
async fn run_read(
    ctx: &GpuContext,
    step: &StepBuffer,
    op: &GpuOp,
    n_tokens: u32,
    pos: u32,
    buf: &GpuBuffer,
    len: usize,
) -> Vec<f32> {
    ctx.run(step, Step { n_tokens, pos }, &[op]).unwrap();
    ctx.read::<f32>(buf, 0..len).await.unwrap()
}

/// Relative error of `got` against `want`, `floor` keeping values near zero from dominating.
fn rel_err(got: f32, want: f32, floor: f32) -> f32 {
    (got - want).abs() / want.abs().max(floor)
}

/// RMSNorm of every token and of the last token only. The GPU sums squares in f32 by a tree
/// (the twin in f64): tolerance 4e-6 relative to each output value.
async fn rms_norm_matches_cpu(ctx: &GpuContext) {
    let step = ctx.step_buffer();
    let mut worst = 0.0f32;
    // (dim, tokens the buffers hold, tokens in the step, rows)
    let cases = [
        (1, 1, 1, NormRows::AllTokens),
        (7, 5, 5, NormRows::AllTokens),
        (255, 6, 5, NormRows::AllTokens),
        (257, 3, 1, NormRows::AllTokens),
        (1000, 2, 2, NormRows::AllTokens),
        (8192, 2, 2, NormRows::AllTokens),
        (1, 3, 3, NormRows::LastToken),
        (300, 6, 5, NormRows::LastToken),
        (4097, 2, 1, NormRows::LastToken),
        (8192, 3, 2, NormRows::LastToken),
        (256, 3, 2, NormRows::EachHead { heads: 4 }),
        (7, 4, 4, NormRows::EachHead { heads: 3 }),
        (1, 2, 1, NormRows::EachHead { heads: 5 }),
    ];
    for (case, &(dim, max_tokens, n_tokens, rows)) in cases.iter().enumerate() {
        let (max_u, n_u) = (max_tokens as usize, n_tokens as usize);
        let heads = match rows {
            NormRows::EachHead { heads } => heads as usize,
            _ => 1,
        };
        let (dim_u, x_len) = (dim as usize, dim as usize * heads * max_u);
        let x = random_values(x_len, 11 + case as u64, 3.0);
        let weight: Vec<f32> = random_values(dim_u, 101 + case as u64, 1.0).iter().map(|w| w + 0.5).collect();
        let eps = 1e-5;
        // One spare row in `out` for the last-token case, to see that only row 0 is written.
        let out_len = match rows {
            NormRows::AllTokens | NormRows::EachHead { .. } => x_len,
            NormRows::LastToken => 2 * dim_u,
        };
        let x_buf = ctx.buffer_from("x", &x).unwrap();
        let w_buf = ctx.buffer_from("weight", &weight).unwrap();
        let out_buf = ctx.buffer_from("out", &vec![UNTOUCHED; out_len]).unwrap();
        let op = ctx.op_rms_norm(&x_buf, &w_buf, &out_buf, dim, eps, rows, &step).unwrap();
        let got = run_read(ctx, &step, &op, n_tokens, 0, &out_buf, out_len).await;

        // Rows of `dim` in x that the step normalises, in the order they land in `out`.
        let want_rows: Vec<usize> = match rows {
            NormRows::AllTokens | NormRows::EachHead { .. } => (0..n_u * heads).collect(),
            NormRows::LastToken => vec![n_u - 1],
        };
        for (r, &t) in want_rows.iter().enumerate() {
            let mut want = x[t * dim_u..(t + 1) * dim_u].to_vec();
            ops::rms_norm(&mut want, &weight, eps);
            for (c, (&g, &w)) in got[r * dim_u..(r + 1) * dim_u].iter().zip(&want).enumerate() {
                let e = rel_err(g, w, 1e-30);
                worst = worst.max(e);
                assert!(e <= 4e-6, "dim {dim} {rows:?} token {t} value {c}: gpu {g} cpu {w}");
            }
        }
        let written = want_rows.len() * dim_u;
        assert!(got[written..].iter().all(|&v| v == UNTOUCHED), "dim {dim} {rows:?}: wrote past its rows");
    }
    report!("rms_norm: worst relative error {worst:e}");
}

/// More rows than one dispatch dimension holds (65535 workgroups): they spill into y.
/// Natively only: SwiftShader takes ~100 s over 70000 workgroups that synchronise.
async fn rms_norm_spills_rows(ctx: &GpuContext) {
    if cfg!(target_arch = "wasm32") {
        return;
    }
    let step = ctx.step_buffer();
    // Buffers of one token more than the step, to see that the spilled rows stop at the step.
    let (dim, n) = (2usize, 70_000usize);
    let x = random_values(dim * (n + 1), 7, 2.0);
    let weight = [0.75f32, -1.25];
    let x_buf = ctx.buffer_from("x", &x).unwrap();
    let w_buf = ctx.buffer_from("weight", &weight).unwrap();
    let out_buf = ctx.buffer_from("out", &vec![UNTOUCHED; dim * (n + 1)]).unwrap();
    let op = ctx.op_rms_norm(&x_buf, &w_buf, &out_buf, dim as u32, 1e-6, NormRows::AllTokens, &step).unwrap();
    let got = run_read(ctx, &step, &op, n as u32, 0, &out_buf, dim * (n + 1)).await;
    assert_eq!(got[dim * n..], [UNTOUCHED; 2], "the token past the step was written");
    for (t, (g, row)) in got[..dim * n].chunks(dim).zip(x.chunks(dim)).enumerate() {
        let mut want = row.to_vec();
        ops::rms_norm(&mut want, &weight, 1e-6);
        for (&g, &w) in g.iter().zip(&want) {
            assert!(rel_err(g, w, 1e-30) <= 4e-6, "token {t}: gpu {g} cpu {w}");
        }
    }
}

/// Tolerance of RoPE at position `pos`, relative to the length of the pair rotated. The
/// kernel takes θ_i = pos · 2^(i · log2 s) with the driver's exp2 where the twin multiplies
/// by s i times; the two θ differ by an ulp or so of θ (ulp(4000) = 2.4e-4 rad), turning the
/// pair by that much more or less. So: 2e-6 for the sines and cosines, plus 8 · pos · 2^-23
/// (measured on lavapipe and SwiftShader: at most 1.02 · pos · 2^-23, about an ulp of θ).
fn rope_tolerance(pos: u32) -> f32 {
    2e-6 + 8.0 * pos as f32 * f32::EPSILON
}

/// RoPE in both layouts at position 0 and far along, with n_rot < head_dim, steps of fewer
/// tokens than the buffer holds. The dimensions past n_rot and the tokens past the step must
/// come back bit for bit.
async fn rope_matches_cpu(ctx: &GpuContext) {
    let step = ctx.step_buffer();
    // (n_heads, head_dim, n_rot, tokens the buffer holds, tokens in the step, pos, base)
    let cases = [
        (1u32, 2u32, 2u32, 1u32, 1u32, 0u32, 10000.0f32),
        (1, 2, 2, 1, 1, 4000, 10000.0),
        (3, 64, 32, 6, 5, 0, 10000.0),
        (3, 64, 32, 6, 5, 4000, 10000.0),
        (2, 128, 128, 2, 1, 4000, 500000.0),
        (4, 6, 2, 3, 3, 7, 10000.0),
        (5, 80, 64, 4, 4, 8188, 1000000.0),
        (32, 128, 128, 1, 1, 3999, 10000.0),
    ];
    for neox in [false, true] {
        let mut worst = [0.0f32; 2];
        for (case, &(n_heads, head_dim, n_rot, max_tokens, n_tokens, pos, base)) in cases.iter().enumerate() {
            let width = (n_heads * head_dim) as usize;
            let x = random_values(width * max_tokens as usize, 31 + case as u64, 2.0);
            let x_buf = ctx.buffer_from("x", &x).unwrap();
            let spec = RopeSpec { neox, n_heads, head_dim, n_rot, base };
            let op = ctx.op_rope(&x_buf, spec, &step).unwrap();
            let got = run_read(ctx, &step, &op, n_tokens, pos, &x_buf, x.len()).await;

            let mut want = x.clone();
            for t in 0..n_tokens as usize {
                let token = &mut want[t * width..(t + 1) * width];
                let p = pos as usize + t;
                if neox {
                    ops::rope_neox(token, head_dim as usize, n_rot as usize, p, base);
                } else {
                    ops::rope_norm(token, head_dim as usize, n_rot as usize, p, base);
                }
            }
            let (hd, half) = (head_dim as usize, n_rot as usize / 2);
            let tol = rope_tolerance(pos + n_tokens - 1);
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                let (t, d) = (i / width, i % hd);
                let what = format!("neox {neox} case {case} token {t} head {} dim {d}", (i % width) / hd);
                if t >= n_tokens as usize || d >= n_rot as usize {
                    assert_eq!(g.to_bits(), x[i].to_bits(), "{what}: must be left alone");
                    continue;
                }
                // The input pair this value came from: its length bounds the rotation's error.
                let partner = match (neox, d < half) {
                    (false, _) => i ^ 1,
                    (true, true) => i + half,
                    (true, false) => i - half,
                };
                let len = x[i].hypot(x[partner]).max(1e-3);
                let e = (g - w).abs() / len;
                let slot = usize::from(pos > 0);
                worst[slot] = worst[slot].max(e);
                assert!(e <= tol, "{what}: gpu {g} cpu {w} (error {e:e} > {tol:e})");
            }
        }
        report!("rope neox {neox}: worst error / pair length: pos 0 {:e}, later {:e}", worst[0], worst[1]);
    }
}

/// SwiGLU. The kernel computes exp as ggml does (the twin's `expf_ggml`); the twin uses libm's
/// expf on a tail of fewer than four values and the driver may fuse multiply-adds or round
/// its division within 2.5 ulp: tolerance 2e-6 relative (about 16 ulp), subnormal results
/// compared absolutely (drivers may flush them).
async fn silu_mul_matches_cpu(ctx: &GpuContext) {
    glu_matches_cpu(ctx, Glu::Silu).await;
}

/// GeGLU: ggml rounds the argument to f16 and looks GELU up in a table of f16 results; the
/// kernel rounds the same way and computes the entry with the driver's tanh, which may land
/// on the neighbouring f16: one f16 ulp of the GELU is at most 2^-10 of it; tolerance 2^-9
/// of |GELU · up|. GELUs under 1e-3 (arguments below about -3.2, where 1 + tanh cancels in
/// f32 and an ulp of tanh is a large part of the result) are held to 2^-9 · 1e-3 · |up|.
async fn gelu_mul_matches_cpu(ctx: &GpuContext) {
    glu_matches_cpu(ctx, Glu::Gelu).await;
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Glu {
    Silu,
    Gelu,
}

async fn glu_matches_cpu(ctx: &GpuContext, glu: Glu) {
    let step = ctx.step_buffer();
    let mut worst = 0.0f32;
    // (width, tokens the buffers hold, tokens in the step)
    let cases = [(1u32, 1u32, 1u32), (3, 5, 5), (5, 6, 5), (257, 3, 1), (1000, 2, 2), (4099, 3, 2)];
    for (case, &(width, max_tokens, n_tokens)) in cases.iter().enumerate() {
        let len = (width * max_tokens) as usize;
        let mut gate = random_values(len, 51 + case as u64, 12.0);
        // Large and awkward arguments of exp: saturation, the scaled ranges past ±126·ln2.
        let awkward = [0.0f32, -0.0, 100.0, -100.0, 88.0, -88.0, 95.0, -95.0, 1e-3, -30.0, 150.0, -150.0, -60.0];
        for (slot, v) in awkward.iter().enumerate() {
            if slot * 7 < len {
                gate[slot * 7] = *v;
            }
        }
        let up = random_values(len, 71 + case as u64, 2.0);
        let gate_buf = ctx.buffer_from("gate", &gate).unwrap();
        let up_buf = ctx.buffer_from("up", &up).unwrap();
        let op = match glu {
            Glu::Silu => ctx.op_silu_mul(&gate_buf, &up_buf, width, &step).unwrap(),
            Glu::Gelu => ctx.op_gelu_mul(&gate_buf, &up_buf, width, &step).unwrap(),
        };
        let got = run_read(ctx, &step, &op, n_tokens, 3, &gate_buf, len).await;

        let w = width as usize;
        for t in 0..max_tokens as usize {
            let mut want = gate[t * w..(t + 1) * w].to_vec();
            if t < n_tokens as usize {
                match glu {
                    Glu::Silu => ops::silu_mul(&mut want, &up[t * w..(t + 1) * w]),
                    Glu::Gelu => ops::gelu_mul(&mut want, &up[t * w..(t + 1) * w]),
                }
            }
            for (c, (&g, &wv)) in got[t * w..(t + 1) * w].iter().zip(&want).enumerate() {
                if t >= n_tokens as usize {
                    assert_eq!(g.to_bits(), wv.to_bits(), "width {width} token {t} value {c}: must be left alone");
                    continue;
                }
                let (e, tol) = match glu {
                    Glu::Silu => (rel_err(g, wv, f32::MIN_POSITIVE), 2e-6),
                    // Relative to |up|: a GELU near zero is an f16 of tiny absolute size.
                    Glu::Gelu => {
                        let u = up[t * w + c].abs().max(f32::MIN_POSITIVE);
                        let rounded = half::f16::from_f32(gate[t * w + c]).to_f32();
                        ((g - wv).abs() / u / ops::gelu(rounded).abs().max(1e-3), 2f32.powi(-9))
                    }
                };
                worst = worst.max(e);
                assert!(
                    e <= tol,
                    "{glu:?} width {width} token {t} value {c}: gate {} gpu {g} cpu {wv}",
                    gate[t * w + c]
                );
            }
        }
    }
    report!("{glu:?}: worst relative error {worst:e}");
}

/// The residual add, exact.
async fn add_matches_cpu(ctx: &GpuContext) {
    let step = ctx.step_buffer();
    let cases = [(1u32, 1u32, 1u32), (3, 5, 5), (7, 6, 5), (1000, 2, 1), (4097, 3, 3)];
    for (case, &(width, max_tokens, n_tokens)) in cases.iter().enumerate() {
        let len = (width * max_tokens) as usize;
        let x = random_values(len, 81 + case as u64, 5.0);
        let y = random_values(len, 91 + case as u64, 5.0);
        let x_buf = ctx.buffer_from("x", &x).unwrap();
        let y_buf = ctx.buffer_from("y", &y).unwrap();
        let op = ctx.op_add(&x_buf, &y_buf, width, &step).unwrap();
        let got = run_read(ctx, &step, &op, n_tokens, 0, &x_buf, len).await;
        let mut want = x.clone();
        let active = (width * n_tokens) as usize;
        ops::add(&mut want[..active], &y[..active]);
        let got_bits: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
        let want_bits: Vec<u32> = want.iter().map(|v| v.to_bits()).collect();
        assert_eq!(got_bits, want_bits, "width {width}, {n_tokens} of {max_tokens} tokens");
    }
}

/// A bias added to every token of the step, and a constant factor: exact.
async fn add_bias_and_scale_match_cpu(ctx: &GpuContext) {
    let step = ctx.step_buffer();
    for (case, &(width, max_tokens, n_tokens)) in [(1u32, 1u32, 1u32), (7, 6, 5), (1000, 3, 2)].iter().enumerate() {
        let (w, len) = (width as usize, (width * max_tokens) as usize);
        let x = random_values(len, 110 + case as u64, 5.0);
        let bias = random_values(w, 120 + case as u64, 2.0);
        let (x_buf, bias_buf) = (ctx.buffer_from("x", &x).unwrap(), ctx.buffer_from("bias", &bias).unwrap());
        let factor = 25.298_222;
        let ops = [
            ctx.op_add_bias(&x_buf, &bias_buf, width, &step).unwrap(),
            ctx.op_scale(&x_buf, width, factor, &step).unwrap(),
        ];
        ctx.run(&step, Step { n_tokens, pos: 0 }, &[&ops[0], &ops[1]]).unwrap();
        let got = ctx.read::<f32>(&x_buf, 0..len).await.unwrap();
        let mut want = x.clone();
        for row in want[..w * n_tokens as usize].chunks_exact_mut(w) {
            ops::add(row, &bias);
            row.iter_mut().for_each(|v| *v *= factor);
        }
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want), "width {width}, {n_tokens} of {max_tokens} tokens");
    }
}

/// More than 65535 · 256 values (natively only: 2 × 67 MB is too much for the browser tests):
/// the workgroups spill into the y dimension of the grid.
async fn check_add_spills_past_one_dispatch_dimension(ctx: &GpuContext) {
    if cfg!(target_arch = "wasm32") {
        return;
    }
    let step = ctx.step_buffer();
    let (width, n_tokens) = (4096usize, 4097usize);
    let len = width * n_tokens;
    let x: Vec<f32> = (0..len).map(|i| (i % 1021) as f32).collect();
    let y: Vec<f32> = (0..len).map(|i| (i % 17) as f32 * 0.5).collect();
    let x_buf = ctx.buffer_from("x", &x).unwrap();
    let y_buf = ctx.buffer_from("y", &y).unwrap();
    let op = ctx.op_add(&x_buf, &y_buf, width as u32, &step).unwrap();
    ctx.run(&step, Step { n_tokens: n_tokens as u32, pos: 0 }, &[&op]).unwrap();
    let got = ctx.read::<f32>(&x_buf, 0..len).await.unwrap();
    for (i, &g) in got.iter().enumerate() {
        assert_eq!(g, x[i] + y[i], "value {i}");
    }
}

/// Buffers too small for the shape, bad RoPE shapes and aliasing fail when the op is built,
/// naming the values; a step of more tokens than the buffers hold fails when it runs.
async fn check_layer_ops_reject_bad_shapes(ctx: &GpuContext) {
    let step = ctx.step_buffer();
    let b = |n: usize| ctx.buffer("b", n).unwrap();
    let (x, w, out) = (b(16), b(8), b(16));
    let shape = |r: Result<GpuOp, KernelError>, needle: &str| match r {
        Err(e @ KernelError::OpShape { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(needle), "{msg:?} does not mention {needle:?}");
        }
        Err(e) => panic!("expected OpShape mentioning {needle:?}, got {e}"),
        Ok(op) => panic!("expected OpShape mentioning {needle:?}, got op {}", op.label()),
    };
    let all = NormRows::AllTokens;
    shape(ctx.op_rms_norm(&x, &w, &out, 32, 1e-5, all, &step), "16 values, less than one token of 32");
    shape(ctx.op_rms_norm(&x, &w, &out, 0, 1e-5, all, &step), "width of x is 0");
    shape(ctx.op_rms_norm(&x, &b(4), &out, 8, 1e-5, all, &step), "weight holds 4 values, 8 needed for dim 8");
    shape(
        ctx.op_rms_norm(&x, &w, &b(15), 8, 1e-5, all, &step),
        "out holds 15 values, 16 needed for 2 tokens of 8, as x holds",
    );
    shape(
        ctx.op_rms_norm(&x, &w, &b(7), 8, 1e-5, NormRows::LastToken, &step),
        "out holds 7 values, 8 needed for the last token, of 8",
    );
    shape(ctx.op_rms_norm(&x, &w, &x, 8, 1e-5, all, &step), "same buffer");
    let spec = RopeSpec { neox: false, n_heads: 2, head_dim: 8, n_rot: 8, base: 10000.0 };
    shape(ctx.op_rope(&b(15), spec, &step), "15 values, less than one token of 16");
    shape(ctx.op_rope(&x, RopeSpec { n_rot: 7, ..spec }, &step), "n_rot 7");
    shape(ctx.op_rope(&x, RopeSpec { n_rot: 10, ..spec }, &step), "n_rot 10");
    shape(ctx.op_rope(&x, RopeSpec { base: -1.0, ..spec }, &step), "base -1");
    shape(ctx.op_silu_mul(&x, &b(12), 4, &step), "up holds 12 values, 16 needed for 4 tokens of 4, as gate holds");
    shape(ctx.op_add(&x, &b(12), 8, &step), "y holds 12 values, 16 needed for 2 tokens of 8, as x holds");
    shape(ctx.op_add(&x, &x, 8, &step), "same buffer");
    shape(ctx.op_add_bias(&x, &b(7), 8, &step), "bias holds 7 values, 8 needed for width 8");
    shape(ctx.op_scale(&x, 8, f32::NAN, &step), "factor NaN");
    shape(ctx.op_rms_norm(&x, &w, &out, 8, 1e-5, NormRows::EachHead { heads: 0 }, &step), "0 heads");
    shape(ctx.op_rms_norm(&x, &w, &out, 4, 1e-5, NormRows::EachHead { heads: 5 }, &step), "less than one token of 20");
    shape(ctx.op_gelu_mul(&x, &b(12), 4, &step), "up holds 12 values");

    // Buffers of 2 tokens: a step of 3 is refused before anything is encoded.
    let ops = [
        ctx.op_rms_norm(&x, &w, &out, 8, 1e-5, all, &step).unwrap(),
        ctx.op_rope(&x, RopeSpec { n_heads: 1, ..spec }, &step).unwrap(),
        ctx.op_silu_mul(&x, &out, 8, &step).unwrap(),
        ctx.op_add(&x, &out, 8, &step).unwrap(),
    ];
    for op in &ops {
        match ctx.run(&step, Step { n_tokens: 3, pos: 0 }, &[op]) {
            Err(KernelError::TooManyTokens { tokens: 3, max: 2, .. }) => {}
            other => panic!("{}: expected TooManyTokens {{ tokens: 3, max: 2 }}, got {other:?}", op.label()),
        }
        ctx.run(&step, Step { n_tokens: 2, pos: 0 }, &[op]).unwrap();
    }
    ctx.read::<f32>(&x, 0..1).await.unwrap();
}

gpu_tests! {
    rms_norm_matches_cpu_reference => rms_norm_matches_cpu,
    rms_norm_spills_rows_past_one_dispatch_dimension => rms_norm_spills_rows,
    rope_matches_cpu_reference_in_both_layouts => rope_matches_cpu,
    silu_mul_matches_cpu_reference => silu_mul_matches_cpu,
    gelu_mul_matches_cpu_reference => gelu_mul_matches_cpu,
    add_bias_and_scale_match_cpu_exactly => add_bias_and_scale_match_cpu,
    add_matches_cpu_reference_exactly => add_matches_cpu,
    add_spills_past_one_dispatch_dimension => check_add_spills_past_one_dispatch_dimension,
    layer_ops_reject_bad_shapes => check_layer_ops_reject_bad_shapes,
}
