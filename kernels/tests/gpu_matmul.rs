//! `op_matmul` (decode matvec and prefill tiles) and `op_embed` against the CPU: the same GGUF
//! bytes dequantised by `quant::dequantize`, dotted in f64. Natively on lavapipe and, in the
//! wasm build, on WebGPU in Chromium (`gpu_tests!`).
//!
//! Tolerance: the GPU dequantises exactly as the CPU does (up to a fused multiply-add in Q4_1's
//! `d q + m`) and sums f32 products in f32, in another order. Rounding then grows like
//! `sqrt(cols)` times the size of the terms, so each output may differ from the f64 reference
//! by `TOL · sqrt(cols) · Σ_c |w_c x_c|` with `TOL = 1e-6` (about 8 f32 epsilons). A single
//! wrong weight, sign or scale moves an output by about `Σ|w x| / cols`, well above that for
//! the shapes here.
//!
//! With `shader-f16` (lavapipe has it; SwiftShader, in the browser, does not), F16, Q4_0, Q4_1
//! and Q8_0 are dequantised in f16: the CPU twin is then the same dequantisation with each
//! weight rounded to f16 (what one correctly rounded f16 multiply gives, as `d` and `q` are
//! exact in f16 and their product in f32), under the same tolerance. Q4_1's `d q + m`, when
//! not fused, rounds twice: its outputs may be off by one more f16 rounding of each weight,
//! `2⁻¹¹ · Σ|w x|`. The f32 path is checked natively too, on a context without f16
//! (`*_without_f16`).

mod common;

use common::random_values;
use half::f16;
use hearth_kernels::KernelError;
use hearth_kernels::gpu::{GpuContext, GpuMatrix, GpuOptions, GpuQueueStats, Step};
use hearth_kernels::quant::{QuantFormat, dequantize, quantize_q8_0};

const TOL: f64 = 1e-6;
/// Written into outputs before a run: values past the step's tokens must keep it.
const SENTINEL: f32 = 12345.0;

/// Random GGUF bytes of `rows × cols` values of `format`, with sane f16 scales.
fn random_matrix(format: QuantFormat, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    let n = rows * cols;
    let blocks = n / 32;
    let half = |v: f32| f16::from_f32(v).to_le_bytes();
    let nibble_bytes = |seed| -> Vec<u8> {
        random_values(blocks * 16, seed, 1.0).iter().map(|v| ((v + 1.0) * 127.99) as u8).collect()
    };
    match format {
        QuantFormat::F32 => random_values(n, seed, 1.0).iter().flat_map(|v| v.to_le_bytes()).collect(),
        QuantFormat::F16 => random_values(n, seed, 1.0).iter().flat_map(|&v| half(v)).collect(),
        QuantFormat::Q8_0 => {
            // Rows of different magnitudes, quantised as llama.cpp does.
            let x: Vec<f32> =
                random_values(n, seed, 1.0).iter().enumerate().map(|(i, v)| v * (1 + (i / cols) % 7) as f32).collect();
            bytemuck::cast_slice(&quantize_q8_0(&x).unwrap()).to_vec()
        }
        QuantFormat::Q4_0 => {
            let d = random_values(blocks, seed + 1, 0.05);
            let qs = nibble_bytes(seed + 2);
            (0..blocks).flat_map(|b| half(d[b]).into_iter().chain(qs[b * 16..][..16].iter().copied())).collect()
        }
        QuantFormat::Q4_1 => {
            let d = random_values(blocks, seed + 1, 0.05);
            let m = random_values(blocks, seed + 3, 0.4);
            let qs = nibble_bytes(seed + 2);
            (0..blocks)
                .flat_map(|b| half(d[b]).into_iter().chain(half(m[b])).chain(qs[b * 16..][..16].iter().copied()))
                .collect()
        }
        QuantFormat::BF16 => {
            random_values(n, seed, 1.0).iter().flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes()).collect()
        }
        // Q5_0, Q5_1 and the K-quants: random codes, scales and mins, with the f16 fields (d,
        // and m or dmin) set to sane values per block.
        _ => {
            let block = format.block_bytes();
            let mut bytes: Vec<u8> = random_values(n / format.block_size() * block, seed, 1.0)
                .iter()
                .map(|v| ((v + 1.0) * 127.99) as u8)
                .collect();
            let d = random_values(n / format.block_size(), seed + 1, 0.05);
            let m = random_values(n / format.block_size(), seed + 3, 0.4);
            for (b, chunk) in bytes.chunks_exact_mut(block).enumerate() {
                if format == QuantFormat::Q6_K {
                    chunk[208..].copy_from_slice(&half(d[b] / 8.0));
                } else {
                    chunk[..2].copy_from_slice(&half(d[b]));
                    if format != QuantFormat::Q5_0 {
                        // Q5_1's m; the K-quants' dmin.
                        chunk[2..4].copy_from_slice(&half(if format == QuantFormat::Q5_1 { m[b] } else { d[b] / 4.0 }));
                    }
                }
            }
            bytes
        }
    }
}

/// Row `r` of the matrix, dequantised on the CPU.
fn cpu_row(format: QuantFormat, bytes: &[u8], rows: usize, cols: usize, r: usize) -> Vec<f32> {
    let row_bytes = bytes.len() / rows;
    let mut out = vec![0.0; cols];
    dequantize(format, &bytes[r * row_bytes..][..row_bytes], &mut out).unwrap();
    out
}

/// The formats the matmul kernels dequantise in f16 when the device has `shader-f16`.
fn f16_scaled(format: QuantFormat) -> bool {
    matches!(format, QuantFormat::F16 | QuantFormat::Q4_0 | QuantFormat::Q4_1 | QuantFormat::Q8_0)
}

/// `y[t][r]` in f64 and `Σ_c |w x|` for each, for the first `n_tokens` tokens of `x`, as
/// `w` computes it: with its weights rounded to f16 when it is dequantised in f16.
fn cpu_matmul(w: &GpuMatrix, bytes: &[u8], x: &[f32], n_tokens: usize) -> (Vec<f64>, Vec<f64>) {
    let (format, rows, cols) = (w.format, w.rows, w.cols);
    let mut want = vec![0.0; n_tokens * rows];
    let mut size = vec![0.0; n_tokens * rows];
    for r in 0..rows {
        let mut w_row = cpu_row(format, bytes, rows, cols, r);
        if w.dequantised_in_f16() {
            w_row.iter_mut().for_each(|v| *v = f16::from_f32(*v).to_f32());
        }
        let w = w_row;
        for t in 0..n_tokens {
            let (mut dot, mut abs) = (0.0f64, 0.0f64);
            for (wc, xc) in w.iter().zip(&x[t * cols..][..cols]) {
                let p = f64::from(*wc) * f64::from(*xc);
                dot += p;
                abs += p.abs();
            }
            want[t * rows + r] = dot;
            size[t * rows + r] = abs;
        }
    }
    (want, size)
}

/// Runs `op_matmul` for a step of `n_tokens` with buffers sized for `capacity` tokens, checks
/// that y past the step is untouched, and returns y of the step.
async fn gpu_matmul(ctx: &GpuContext, w: &GpuMatrix, x: &[f32], capacity: usize, n_tokens: usize) -> Vec<f32> {
    assert_eq!(x.len(), capacity * w.cols);
    let xb = ctx.buffer_from("x", x).unwrap();
    let yb = ctx.buffer_from("y", &vec![SENTINEL; capacity * w.rows]).unwrap();
    let step = ctx.step_buffer();
    let op = ctx.op_matmul(w, &xb, &yb, &step).unwrap();
    ctx.run(&step, Step { n_tokens: n_tokens as u32, pos: 0 }, &[&op]).unwrap();
    let y = ctx.read::<f32>(&yb, 0..capacity * w.rows).await.unwrap();
    let n = n_tokens * w.rows;
    assert!(y[n..].iter().all(|&v| v == SENTINEL), "y past the {n_tokens} tokens of the step was written");
    y[..n].to_vec()
}

/// Compares `w`'s outputs against the CPU; returns the worst error in units of
/// `sqrt(cols) · Σ|w x|`.
fn assert_close(w: &GpuMatrix, got: &[f32], want: &[f64], size: &[f64], what: &str) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}");
    // Q4_1's `d q + m` in f16 may round twice (see the top of this file).
    let second_rounding = if w.dequantised_in_f16() && w.format == QuantFormat::Q4_1 { 2f64.powi(-11) } else { 0.0 };
    let mut worst = 0.0f64;
    for (i, ((&g, &c), &s)) in got.iter().zip(want).zip(size).enumerate() {
        let scale = (w.cols as f64).sqrt() * s.max(1e-30);
        let tol = TOL * scale + second_rounding * s;
        let err = (f64::from(g) - c).abs();
        assert!(err <= tol, "{what}: output {i}: gpu {g} cpu {c} (error {err:e}, tolerance {tol:e})");
        worst = worst.max(err / scale);
    }
    worst
}

/// One matmul case: upload, run, compare. Returns the worst relative error.
async fn check_case(
    ctx: &GpuContext,
    format: QuantFormat,
    (rows, cols): (usize, usize),
    capacity: usize,
    n_tokens: usize,
    seed: u64,
) -> f64 {
    let bytes = random_matrix(format, rows, cols, seed);
    let w = ctx.upload_matrix("w", format, &bytes, rows, cols).unwrap();
    assert_eq!(w.dequantised_in_f16(), ctx.adapter().shader_f16 && f16_scaled(format), "{format}");
    let x = random_values(capacity * cols, seed + 10, 1.0);
    let got = gpu_matmul(ctx, &w, &x, capacity, n_tokens).await;
    let (want, size) = cpu_matmul(&w, &bytes, &x, n_tokens);
    let what = format!("{format} {rows}x{cols}, {n_tokens} of {capacity} tokens");
    assert_close(&w, &got, &want, &size, &what)
}

/// Odd shapes for the format: one row, rows that do not fill a workgroup, one block, long rows.
fn shapes(format: QuantFormat) -> Vec<(usize, usize)> {
    // K-quant rows are whole 256-value blocks.
    let k = format.block_size().max(32) / 32;
    let long = if k > 1 { 1280 } else { 576 };
    let mut shapes = vec![(1, 32 * k), (5, 32 * k), (37, 96 * k), (130, long), (40, 2048)];
    if format.block_size() == 1 {
        // F32 / F16 rows need not be whole 32-value blocks.
        shapes.extend([(1, 1), (7, 45), (66, 100)]);
    }
    shapes
}

/// Decode (one token, the matvec kernel) on odd shapes, also with buffers for more tokens.
async fn check_matvec(ctx: &GpuContext, format: QuantFormat) -> f64 {
    let mut worst = 0.0f64;
    for (j, shape) in shapes(format).into_iter().enumerate() {
        worst = worst.max(check_case(ctx, format, shape, 1, 1, j as u64 + 1).await);
        worst = worst.max(check_case(ctx, format, shape, 4, 1, j as u64 + 50).await);
    }
    worst
}

/// Prefill (several tokens, the tiled kernel): partial row and token tiles, several token
/// tiles, steps shorter than the buffers.
async fn check_prefill(ctx: &GpuContext, format: QuantFormat) -> f64 {
    let odd = if format.block_size() == 1 { (33, 45) } else { (33, 64) };
    let k = format.block_size().max(32) / 32;
    let (odd, short, mid) = if k > 1 { ((33, 256), (1, 256), (65, 512)) } else { (odd, (1, 32), (65, 128)) };
    let mut worst = 0.0f64;
    for (shape, capacity, n_tokens) in
        [((70, 96 * k), 3, 3), (short, 2, 2), (odd, 64, 3), ((130, 256), 64, 64), (mid, 100, 70)]
    {
        worst = worst.max(check_case(ctx, format, shape, capacity, n_tokens, 1000 + n_tokens as u64).await);
    }
    worst
}

/// Everything one format does: decode, prefill and the embedding. One test per format, so a
/// device compiles one format's kernels (SwiftShader takes seconds per pipeline).
async fn check_format(ctx: &GpuContext, format: QuantFormat) {
    let decode = check_matvec(ctx, format).await;
    let prefill = check_prefill(ctx, format).await;
    check_embed(ctx, format).await;
    eprintln!("{format}: worst error, in sqrt(cols) · Σ|w x|: decode {decode:.2e}, prefill {prefill:.2e}");
}

async fn check_f32(ctx: &GpuContext) {
    check_format(ctx, QuantFormat::F32).await
}
async fn check_f16(ctx: &GpuContext) {
    check_format(ctx, QuantFormat::F16).await
}
async fn check_q4_0(ctx: &GpuContext) {
    check_format(ctx, QuantFormat::Q4_0).await
}
async fn check_q4_1(ctx: &GpuContext) {
    check_format(ctx, QuantFormat::Q4_1).await
}
async fn check_q8_0(ctx: &GpuContext) {
    check_format(ctx, QuantFormat::Q8_0).await
}
async fn check_bf16(ctx: &GpuContext) {
    check_format(ctx, QuantFormat::BF16).await
}
/// The formats repacked as affine runs share one pipeline set: one test compiles it once.
async fn check_affine_formats(ctx: &GpuContext) {
    for format in [QuantFormat::Q5_0, QuantFormat::Q5_1, QuantFormat::Q4_K, QuantFormat::Q5_K, QuantFormat::Q6_K] {
        check_format(ctx, format).await
    }
}

/// An output head: 49152 rows of 576 columns (SmolLM's vocabulary), one token and two.
async fn check_tall_output_head_matches_cpu(ctx: &GpuContext) {
    let (rows, cols) = (49152, 576);
    let format = QuantFormat::Q8_0;
    let bytes = random_matrix(format, rows, cols, 7);
    let w = ctx.upload_matrix("head", format, &bytes, rows, cols).unwrap();
    let x = random_values(2 * cols, 8, 1.0);
    let mut worst = 0.0f64;
    for n_tokens in [1, 2] {
        let got = gpu_matmul(ctx, &w, &x, 2, n_tokens).await;
        let (want, size) = cpu_matmul(&w, &bytes, &x, n_tokens);
        worst = worst.max(assert_close(&w, &got, &want, &size, &format!("head, {n_tokens} tokens")));
    }
    eprintln!("output head worst error: {worst:.3e} · sqrt(cols) · Σ|w x|");
}

/// Quant bytes of one repacked row (what sets the split): 8-value units of 32-padded rows.
fn device_row_bytes(format: QuantFormat, cols: usize) -> u64 {
    let per_value = match format {
        QuantFormat::F32 => 4.0,
        QuantFormat::F16 | QuantFormat::BF16 => 2.0,
        QuantFormat::Q4_0 | QuantFormat::Q4_1 => 0.5,
        // Q8_0, and the affine formats' one byte per code.
        _ => 1.0,
    };
    (cols.next_multiple_of(32) as f64 * per_value) as u64
}

/// A matrix split across several bindings gives the same bits as in one, for both kernels and
/// the embedding; a row larger than a binding is an error.
async fn check_split_matrix_matches_unsplit(ctx: &GpuContext) {
    let mut small = GpuContext::new().await.expect("a second GPU context");
    let rows = 300;
    // F16 with rows padded on the device, then Q4_1 (d and m per block). The limit can only be
    // lowered, so the larger rows go first; x and y fit the last limit (12800 bytes).
    for (i, (format, cols)) in [(QuantFormat::F16, 250), (QuantFormat::Q4_1, 256)].into_iter().enumerate() {
        let capacity = 8;
        small.limit_binding_size(device_row_bytes(format, cols) * 100);
        let bytes = random_matrix(format, rows, cols, 40 + i as u64);
        let whole = ctx.upload_matrix("whole", format, &bytes, rows, cols).unwrap();
        let split = small.upload_matrix("split", format, &bytes, rows, cols).unwrap();
        assert_eq!(whole.parts(), 1);
        assert!(split.parts() >= 3, "{format}: {} parts", split.parts());
        let x = random_values(capacity * cols, 41 + i as u64, 1.0);
        for n_tokens in [1, capacity] {
            let a = gpu_matmul(ctx, &whole, &x, capacity, n_tokens).await;
            let b = gpu_matmul(&small, &split, &x, capacity, n_tokens).await;
            assert!(a == b, "{format}, {n_tokens} tokens: split result differs");
            let (want, size) = cpu_matmul(&split, &bytes, &x, n_tokens);
            assert_close(&split, &b, &want, &size, &format!("split {format}"));
        }
        let ids = [299u32, 0, 150, 99, 100, 200];
        let a = gpu_embed(ctx, &whole, &ids, ids.len()).await;
        let b = gpu_embed(&small, &split, &ids, ids.len()).await;
        assert!(a == b, "{format}: split embedding differs");
    }
    small.limit_binding_size(1000);
    let err = small.upload_matrix("wide", QuantFormat::F16, &vec![0; 2 * 2 * 512], 2, 512).unwrap_err();
    assert!(matches!(err, KernelError::BufferTooLarge { bytes: 1024, limit: 1000 }), "{err}");
}

/// Runs `op_embed` for the first `n_tokens` of `ids` (the buffers hold all of them) and
/// checks the outputs past them are untouched.
async fn gpu_embed(ctx: &GpuContext, table: &GpuMatrix, ids: &[u32], n_tokens: usize) -> Vec<f32> {
    let tokens = ctx.buffer_from("tokens", ids).unwrap();
    let out = ctx.buffer_from("out", &vec![SENTINEL; ids.len() * table.cols]).unwrap();
    let step = ctx.step_buffer();
    let op = ctx.op_embed(table, &tokens, &out, &step).unwrap();
    ctx.run(&step, Step { n_tokens: n_tokens as u32, pos: 0 }, &[&op]).unwrap();
    let got = ctx.read::<f32>(&out, 0..out.len()).await.unwrap();
    let n = n_tokens * table.cols;
    assert!(got[n..].iter().all(|&v| v == SENTINEL), "embedding wrote past the step's tokens");
    got[..n].to_vec()
}

/// The embedding equals the CPU's dequantisation bit for bit.
async fn check_embed(ctx: &GpuContext, format: QuantFormat) {
    let cols = match format.block_size() {
        1 => 45,
        32 => 96,
        block => 2 * block,
    };
    for (rows, ids, n_tokens) in [(50, vec![0u32, 49, 7, 7, 23, 1, 2, 3], 5), (1, vec![0], 1)] {
        let bytes = random_matrix(format, rows, cols, 70);
        let table = ctx.upload_matrix("table", format, &bytes, rows, cols).unwrap();
        let got = gpu_embed(ctx, &table, &ids, n_tokens).await;
        for (t, &id) in ids[..n_tokens].iter().enumerate() {
            let want = cpu_row(format, &bytes, rows, cols, id as usize);
            let row = &got[t * cols..][..cols];
            let diff = row.iter().zip(&want).position(|(g, w)| g.to_bits() != w.to_bits());
            assert!(diff.is_none(), "{format} token {t} (id {id}): column {diff:?} gpu {row:?} cpu {want:?}");
        }
    }
}

/// Wrong lengths, formats and shapes are errors that name the values.
async fn check_bad_inputs_are_clear_errors(ctx: &GpuContext) {
    let err = ctx.upload_matrix("w", QuantFormat::Q4_0, &[0; 35], 2, 32).unwrap_err();
    assert!(matches!(err, KernelError::QuantLength { values: 64, bytes: 35, .. }), "{err}");
    assert!(err.to_string().contains("Q4_0"), "{err}");
    let q2_k = QuantFormat::from_ggml_type(10).unwrap();
    let err = ctx.upload_matrix("w", q2_k, &[0; 84], 1, 256).unwrap_err();
    assert!(matches!(err, KernelError::UnsupportedFormat(QuantFormat::Q2_K)), "{err}");
    assert!(err.to_string().contains("Q2_K"), "{err}");
    let err = ctx.upload_matrix("w", QuantFormat::IQ4_NL, &[0; 36], 2, 32).unwrap_err();
    assert!(matches!(err, KernelError::UnsupportedFormat(QuantFormat::IQ4_NL)), "{err}");
    let err = ctx.upload_matrix("w", QuantFormat::Q4_K, &[0; 144], 1, 128).unwrap_err();
    assert!(matches!(err, KernelError::OpShape { .. }) && err.to_string().contains("128"), "{err}");
    let err = ctx.upload_matrix("w", QuantFormat::Q8_0, &[0; 68], 1, 48).unwrap_err();
    assert!(matches!(err, KernelError::OpShape { .. }) && err.to_string().contains("48"), "{err}");
    let err = ctx.upload_matrix("w", QuantFormat::F32, &[], 0, 4).unwrap_err();
    assert!(matches!(err, KernelError::OpShape { .. }), "{err}");

    let (rows, cols) = (8, 64);
    let w = ctx.upload_matrix("w", QuantFormat::Q8_0, &random_matrix(QuantFormat::Q8_0, rows, cols, 3), rows, cols);
    let w = w.unwrap();
    let step = ctx.step_buffer();
    let x = ctx.buffer("x", 3 * cols + 5).unwrap();
    let err = ctx.op_matmul(&w, &ctx.buffer("x", cols - 1).unwrap(), &ctx.buffer("y", rows).unwrap(), &step);
    let err = err.err().expect("x shorter than one token");
    assert!(matches!(err, KernelError::OpShape { op: "matmul", .. }) && err.to_string().contains("63"), "{err}");
    let err = ctx.op_matmul(&w, &x, &ctx.buffer("y", 3 * rows - 1).unwrap(), &step).err().expect("short y");
    assert!(err.to_string().contains("23") && err.to_string().contains("3 tokens"), "{err}");

    let err = ctx.op_matmul(&w, &x, &x, &step).err().expect("y aliasing x");
    assert!(matches!(err, KernelError::OpShape { op: "matmul", .. }), "{err}");

    // x holds 3 tokens (and 5 values more): a step of 4 is refused before anything runs.
    let y = ctx.buffer("y", 3 * rows).unwrap();
    let op = ctx.op_matmul(&w, &x, &y, &step).unwrap();
    let err = ctx.run(&step, Step { n_tokens: 4, pos: 0 }, &[&op]).unwrap_err();
    assert!(matches!(err, KernelError::TooManyTokens { op: "matmul", tokens: 4, max: 3 }), "{err}");

    let tokens = ctx.buffer("tokens", 2).unwrap();
    let err = ctx.op_embed(&w, &tokens, &ctx.buffer("out", 2 * cols - 1).unwrap(), &step).err().expect("short out");
    assert!(matches!(err, KernelError::OpShape { op: "embed", .. }), "{err}");
    let op = ctx.op_embed(&w, &tokens, &ctx.buffer("out", 2 * cols).unwrap(), &step).unwrap();
    let err = ctx.run(&step, Step { n_tokens: 3, pos: 0 }, &[&op]).unwrap_err();
    assert!(matches!(err, KernelError::TooManyTokens { op: "embed", tokens: 3, max: 2 }), "{err}");
}

/// The context counts the storage its buffers and matrices hold, and forgets what is dropped
/// (what the app's monitor shows as GPU memory).
async fn check_storage_bytes_follow_live_buffers(_ctx: &GpuContext) {
    let ctx = GpuContext::new().await.expect("a GPU context of its own");
    assert_eq!(ctx.storage_bytes(), 0);
    let (rows, cols) = (300, 256);
    let w = ctx
        .upload_matrix("w", QuantFormat::Q4_1, &random_matrix(QuantFormat::Q4_1, rows, cols, 5), rows, cols)
        .unwrap();
    let with_matrix = ctx.storage_bytes();
    // The 4-bit codes, and a scale and a minimum per 32 values.
    let codes = rows as u64 * device_row_bytes(QuantFormat::Q4_1, cols);
    assert!(with_matrix >= codes && with_matrix <= codes * 2, "{with_matrix} bytes for {codes} bytes of codes");
    let x = ctx.buffer("x", 10).unwrap();
    assert_eq!(ctx.storage_bytes(), with_matrix + 40);
    drop(w);
    assert_eq!(ctx.storage_bytes(), 40);
    drop(x);
    assert_eq!(ctx.storage_bytes(), 0);
}

/// The context counts the command buffers it submits and those the device has finished (the
/// monitor's GPU task queue).
async fn check_queue_counts_submissions_until_done(_ctx: &GpuContext) {
    let ctx = GpuContext::new().await.expect("a GPU context of its own");
    assert_eq!(ctx.sample_queue(), GpuQueueStats::default());
    let step_buffer = ctx.step_buffer();
    for _ in 0..3 {
        ctx.run(&step_buffer, Step { n_tokens: 1, pos: 0 }, &[]).unwrap();
    }
    let queued = ctx.sample_queue();
    assert_eq!(queued.submitted, 3);
    // Natively the device reports work done on a poll or the next submit, so at least the
    // last one waits; in the browser any may be done already.
    #[cfg(not(target_arch = "wasm32"))]
    assert!(queued.in_flight >= 1, "{queued:?}");
    assert!(queued.peak_in_flight >= queued.in_flight && queued.peak_in_flight >= 1, "{queued:?}");
    // A readback waits for everything before it: one more submit, and then nothing in flight
    // (in the browser the done callbacks follow the mapping in the event loop).
    let (rows, cols) = (3, 5);
    let y = ctx.matvec(&random_values(rows * cols, 1, 1.0), &random_values(cols, 2, 1.0), rows, cols).await.unwrap();
    assert_eq!(y.len(), rows);
    let done = ctx.sample_queue();
    assert!(done.submitted >= 5, "{done:?}");
    #[cfg(not(target_arch = "wasm32"))]
    assert_eq!(done.in_flight, 0, "{done:?}");
}

/// The f32 path of the formats that a device with `shader-f16` dequantises in f16, natively on
/// a context told not to use it (the browser tests run it on SwiftShader, which lacks f16).
#[cfg(not(target_arch = "wasm32"))]
mod without_f16 {
    use super::*;

    fn context() -> GpuContext {
        let ctx = pollster::block_on(GpuContext::with_options(GpuOptions { shader_f16: false }))
            .expect("a Vulkan adapter (install mesa-vulkan-drivers for lavapipe)");
        assert!(!ctx.adapter().shader_f16);
        ctx
    }

    #[test]
    fn f16_matches_cpu_without_f16() {
        pollster::block_on(check_f16(&context()));
    }
    #[test]
    fn q4_0_matches_cpu_without_f16() {
        pollster::block_on(check_q4_0(&context()));
    }
    #[test]
    fn q4_1_matches_cpu_without_f16() {
        pollster::block_on(check_q4_1(&context()));
    }
    #[test]
    fn q8_0_matches_cpu_without_f16() {
        pollster::block_on(check_q8_0(&context()));
    }

    /// The f16 and f32 paths really differ: a Q8_0 matrix's outputs move by the f16 rounding
    /// of its weights, and no further than that. Needs an adapter with `shader-f16` (lavapipe
    /// has it), or the f16 path would go untested.
    #[test]
    fn the_f16_path_rounds_weights_to_f16() {
        let half = pollster::block_on(GpuContext::new()).expect("a Vulkan adapter");
        let name = &half.adapter().name;
        assert!(half.adapter().shader_f16, "{name} has no shader-f16, so the f16 path is not tested (lavapipe has it)");
        let full = context();
        let (rows, cols, capacity) = (130, 576, 4);
        let bytes = random_matrix(QuantFormat::Q8_0, rows, cols, 9);
        let x = random_values(capacity * cols, 19, 1.0);
        for n_tokens in [1, capacity] {
            let wh = half.upload_matrix("w", QuantFormat::Q8_0, &bytes, rows, cols).unwrap();
            let wf = full.upload_matrix("w", QuantFormat::Q8_0, &bytes, rows, cols).unwrap();
            let gh = pollster::block_on(gpu_matmul(&half, &wh, &x, capacity, n_tokens));
            let gf = pollster::block_on(gpu_matmul(&full, &wf, &x, capacity, n_tokens));
            let (_, size) = cpu_matmul(&wf, &bytes, &x, n_tokens);
            let moved = gh.iter().zip(&gf).filter(|(a, b)| a != b).count();
            assert!(moved > gh.len() / 2, "{n_tokens} tokens: only {moved} of {} outputs differ", gh.len());
            for (i, ((a, b), s)) in gh.iter().zip(&gf).zip(&size).enumerate() {
                let bound = 2f64.powi(-11) * s + 2.0 * TOL * (cols as f64).sqrt() * s;
                assert!(f64::from(a - b).abs() <= bound, "output {i}: f16 path {a}, f32 path {b}");
            }
        }
    }
}

gpu_tests! {
    storage_bytes_follow_live_buffers => check_storage_bytes_follow_live_buffers,
    queue_counts_submissions_until_done => check_queue_counts_submissions_until_done,
    f32_matches_cpu => check_f32,
    f16_matches_cpu => check_f16,
    q4_0_matches_cpu => check_q4_0,
    q4_1_matches_cpu => check_q4_1,
    q8_0_matches_cpu => check_q8_0,
    bf16_matches_cpu => check_bf16,
    q5_and_k_quants_match_cpu => check_affine_formats,
    tall_output_head_matches_cpu => check_tall_output_head_matches_cpu,
    split_matrix_matches_unsplit => check_split_matrix_matches_unsplit,
    bad_inputs_are_clear_errors => check_bad_inputs_are_clear_errors,
}
