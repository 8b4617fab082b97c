//! `y = W x` with `W` in a GGUF format, as llama.cpp computes it on the CPU: the activations
//! are converted once to the weight format's `vec_dot_format` (Q8_0, Q8_1, F16 or F32), then
//! each row's dot product runs on integers per block and is scaled back in f32.
//!
//! The float steps follow llama.cpp's portable (`_generic`) kernels operation for operation, so
//! the results are bit-identical to it: the integer sums are exact whatever their order (and
//! vectorise freely), and the per-block scaling is a short sequential chain.

use half::f16;
use rayon::prelude::*;

use crate::KernelError;
use crate::quant::{BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockQ8_1, QuantFormat, blocks, quantize_q8_0, quantize_q8_1};

/// Rows handed to one rayon task.
const ROWS_PER_TASK: usize = 16;

/// Activations prepared for one weight format's dot product.
pub enum Activations {
    F32(Vec<f32>),
    F16(Vec<f16>),
    Q8_0(Vec<BlockQ8_0>),
    Q8_1(Vec<BlockQ8_1>),
}

impl Activations {
    /// Converts `x` for dot products with `weights`-format rows.
    pub fn for_weights(weights: QuantFormat, x: &[f32]) -> Result<Self, KernelError> {
        Ok(match weights.vec_dot_format() {
            QuantFormat::F32 => Self::F32(x.to_vec()),
            QuantFormat::F16 => Self::F16(x.iter().map(|&v| f16::from_f32(v)).collect()),
            QuantFormat::Q8_0 => Self::Q8_0(quantize_q8_0(x)?),
            QuantFormat::Q8_1 => Self::Q8_1(quantize_q8_1(x)?),
            other => return Err(KernelError::UnsupportedFormat(other)),
        })
    }

    fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::F16(v) => v.len(),
            Self::Q8_0(v) => v.len() * 32,
            Self::Q8_1(v) => v.len() * 32,
        }
    }
}

/// Every f16 bit pattern as f32 (256 KiB), as ggml's `table_f32_f16`: a lookup beats the
/// conversion in the inner loop, and is exact.
static F16_TO_F32: std::sync::LazyLock<Box<[f32]>> =
    std::sync::LazyLock::new(|| (0..=u16::MAX).map(|b| f16::from_bits(b).to_f32()).collect());

#[inline(always)]
fn half(bits: [u8; 2]) -> f32 {
    F16_TO_F32[u16::from_le_bytes(bits) as usize]
}

/// Σ (nibble - offset) · x over a 32-value block: low nibbles pair with `x[0..16]`, high
/// nibbles with `x[16..32]`. Exact in i32; written so the compiler vectorises it.
#[inline(always)]
fn nibbles_dot(qs: &[u8; 16], x: &[i8; 32], offset: i16) -> i32 {
    let mut acc = [0i32; 16];
    for j in 0..16 {
        let lo = (qs[j] & 0x0f) as i16 - offset;
        let hi = (qs[j] >> 4) as i16 - offset;
        acc[j] = (lo * x[j] as i16) as i32 + (hi * x[j + 16] as i16) as i32;
    }
    acc.iter().sum()
}

/// llama.cpp `ggml_vec_dot_q4_0_q8_0`: per block `(Σ (q_w - 8) q_x · d_w) · d_x`.
#[inline(always)]
pub fn dot_q4_0_q8_0(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
    w.iter()
        .zip(x)
        .map(|(bw, bx)| {
            let sum = nibbles_dot(&bw.qs, &bx.qs, 8);
            sum as f32 * half(bw.d) * half(bx.d)
        })
        .fold(0.0, |acc, v| acc + v)
}

/// llama.cpp `ggml_vec_dot_q4_1_q8_1`: per block `d_w d_x Σ q_w q_x + m_w s_x`, where
/// `s_x = d_x Σ q_x` carries the weights' offset `m_w` across the block.
#[inline(always)]
pub fn dot_q4_1_q8_1(w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
    w.iter()
        .zip(x)
        .map(|(bw, bx)| {
            let sum = nibbles_dot(&bw.qs, &bx.qs, 0);
            half(bw.d) * half(bx.d) * sum as f32 + half(bw.m) * half(bx.s)
        })
        .fold(0.0, |acc, v| acc + v)
}

/// llama.cpp `ggml_vec_dot_q8_0_q8_0`: per block `Σ q_w q_x · (d_w d_x)`.
#[inline(always)]
pub fn dot_q8_0_q8_0(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    w.iter()
        .zip(x)
        .map(|(bw, bx)| {
            let sum: i32 = bw.qs.iter().zip(&bx.qs).map(|(&a, &b)| a as i32 * b as i32).sum();
            sum as f32 * (half(bw.d) * half(bx.d))
        })
        .fold(0.0, |acc, v| acc + v)
}

/// llama.cpp `ggml_vec_dot_f16`: products of halves are exact in f32, summed in f64.
#[inline(always)]
fn dot_f16(w: &[u8], x: &[f16]) -> f32 {
    w.chunks_exact(2).zip(x).fold(0.0f64, |acc, (c, xv)| acc + f64::from(half([c[0], c[1]]) * xv.to_f32())) as f32
}

#[inline(always)]
fn dot_f32(w: &[u8], x: &[f32]) -> f32 {
    w.chunks_exact(4).zip(x).map(|(c, xv)| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) * xv).sum()
}

/// One row's dot product; `row` holds exactly `x.len()` values of `format`.
#[inline(always)]
fn dot_row(format: QuantFormat, row: &[u8], x: &Activations) -> Result<f32, KernelError> {
    Ok(match (format, x) {
        (QuantFormat::Q4_0, Activations::Q8_0(xq)) => dot_q4_0_q8_0(blocks(row)?, xq),
        (QuantFormat::Q4_1, Activations::Q8_1(xq)) => dot_q4_1_q8_1(blocks(row)?, xq),
        (QuantFormat::Q8_0, Activations::Q8_0(xq)) => dot_q8_0_q8_0(blocks(row)?, xq),
        (QuantFormat::F16, Activations::F16(xh)) => dot_f16(row, xh),
        (QuantFormat::F32, Activations::F32(xf)) => dot_f32(row, xf),
        (format, _) => return Err(KernelError::UnsupportedFormat(format)),
    })
}

/// `y = W x`: `W` is `rows` rows of `cols` values of `format`, `x` prepared by
/// [`Activations::for_weights`] for the same format. Rows run in parallel on the rayon pool.
pub fn matvec_quant(
    format: QuantFormat,
    w: &[u8],
    rows: usize,
    cols: usize,
    x: &Activations,
) -> Result<Vec<f32>, KernelError> {
    matmul_quant(format, w, rows, cols, std::slice::from_ref(x))
}

/// `Y = X Wᵀ` for a batch of activation vectors (prefill): returns `[xs.len()][rows]`
/// flattened. Each weight row is read once and dotted with every vector while it is in cache.
pub fn matmul_quant(
    format: QuantFormat,
    w: &[u8],
    rows: usize,
    cols: usize,
    xs: &[Activations],
) -> Result<Vec<f32>, KernelError> {
    let row_bytes =
        format.bytes_for(cols as u64).ok_or(KernelError::QuantLength { format, values: cols, bytes: 0 })? as usize;
    if rows.checked_mul(row_bytes) != Some(w.len()) {
        return Err(KernelError::QuantLength { format, values: rows.saturating_mul(cols), bytes: w.len() });
    }
    if let Some(x) = xs.iter().find(|x| x.len() != cols) {
        return Err(KernelError::MatvecShape {
            rows,
            cols,
            matrix_len: rows.saturating_mul(cols),
            vector_len: x.len(),
        });
    }
    let n = xs.len();
    // Row-major [rows][n] while computing (each task owns whole rows), transposed at the end.
    let mut by_row = vec![0.0f32; rows * n];
    if row_bytes == 0 || n == 0 {
        return Ok(by_row);
    }
    by_row
        .par_chunks_mut(ROWS_PER_TASK * n)
        .zip(w.par_chunks(ROWS_PER_TASK * row_bytes))
        .try_for_each(|(out, w_block)| dot_rows(format, w_block, row_bytes, xs, out))?;
    if n == 1 {
        return Ok(by_row);
    }
    let mut by_vector = vec![0.0f32; rows * n];
    for (r, row) in by_row.chunks_exact(n).enumerate() {
        for (t, &v) in row.iter().enumerate() {
            by_vector[t * rows + r] = v;
        }
    }
    Ok(by_vector)
}

/// Dot products of whole rows of `w_block` with every vector of `xs`, into `out` (`[row][x]`).
#[inline(always)]
fn rows_portable(
    format: QuantFormat,
    w_block: &[u8],
    row_bytes: usize,
    xs: &[Activations],
    out: &mut [f32],
) -> Result<(), KernelError> {
    for (out_row, row) in out.chunks_exact_mut(xs.len()).zip(w_block.chunks_exact(row_bytes)) {
        for (o, x) in out_row.iter_mut().zip(xs) {
            *o = dot_row(format, row, x)?;
        }
    }
    Ok(())
}

/// [`rows_portable`] compiled for AVX2, which vectorises the integer sums twice as wide. The
/// float steps are the same operations (Rust never fuses multiply-adds), so results are
/// bit-identical.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn rows_avx2(
    format: QuantFormat,
    w_block: &[u8],
    row_bytes: usize,
    xs: &[Activations],
    out: &mut [f32],
) -> Result<(), KernelError> {
    rows_portable(format, w_block, row_bytes, xs, out)
}

fn dot_rows(
    format: QuantFormat,
    w_block: &[u8],
    row_bytes: usize,
    xs: &[Activations],
    out: &mut [f32],
) -> Result<(), KernelError> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { rows_avx2(format, w_block, row_bytes, xs, out) };
    }
    rows_portable(format, w_block, row_bytes, xs, out)
}

#[cfg(test)]
// Nibble j pairs value j with value j + 16: indexed loops say so plainly.
#[allow(clippy::needless_range_loop)]
mod tests {
    use super::*;
    use crate::cpu::matvec_reference;
    use crate::quant::dequantize;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i * 7919 + seed * 104729) % 2003) as f32 - 1001.0) / 400.0).collect()
    }

    /// Quantises `w` rows to `format` (through its own reference, so only the dot is tested).
    fn encode(format: QuantFormat, w: &[f32]) -> Vec<u8> {
        match format {
            QuantFormat::F32 => w.iter().flat_map(|v| v.to_le_bytes()).collect(),
            QuantFormat::F16 => w.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect(),
            QuantFormat::Q8_0 => bytemuck::cast_slice(&quantize_q8_0(w).unwrap()).to_vec(),
            QuantFormat::Q4_0 => {
                let q8 = quantize_q8_0(w).unwrap();
                q8.iter()
                    .flat_map(|b| {
                        let mut qs = [0u8; 16];
                        for j in 0..16 {
                            let lo = ((b.qs[j] as i32 >> 4) + 8).clamp(0, 15) as u8;
                            let hi = ((b.qs[j + 16] as i32 >> 4) + 8).clamp(0, 15) as u8;
                            qs[j] = lo | (hi << 4);
                        }
                        let d = f16::from_le_bytes(b.d).to_f32() * 16.0;
                        bytemuck::bytes_of(&BlockQ4_0 { d: f16::from_f32(d).to_le_bytes(), qs }).to_vec()
                    })
                    .collect()
            }
            QuantFormat::Q4_1 => w
                .chunks(32)
                .flat_map(|c| {
                    let (lo, hi) = c.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
                    let d = (hi - lo) / 15.0;
                    let mut qs = [0u8; 16];
                    for j in 0..16 {
                        let q = |v: f32| (((v - lo) / d).round() as i32).clamp(0, 15) as u8;
                        qs[j] = q(c[j]) | (q(c[j + 16]) << 4);
                    }
                    let block = BlockQ4_1 { d: f16::from_f32(d).to_le_bytes(), m: f16::from_f32(lo).to_le_bytes(), qs };
                    bytemuck::bytes_of(&block).to_vec()
                })
                .collect(),
            other => panic!("no encoder for {other}"),
        }
    }

    #[test]
    fn every_format_matches_dequantized_reference() {
        let (rows, cols) = (37, 256);
        let w = values(rows * cols, 1);
        let x = values(cols, 2);
        for format in [QuantFormat::F32, QuantFormat::F16, QuantFormat::Q8_0, QuantFormat::Q4_0, QuantFormat::Q4_1] {
            let bytes = encode(format, &w);
            let mut wd = vec![0.0; rows * cols];
            dequantize(format, &bytes, &mut wd).unwrap();
            // Reference: dequantised weights times the activations as the dot product sees them.
            let act = Activations::for_weights(format, &x).unwrap();
            let xd: Vec<f32> = match &act {
                Activations::F32(v) => v.clone(),
                Activations::F16(v) => v.iter().map(|h| h.to_f32()).collect(),
                Activations::Q8_0(b) => {
                    let mut out = vec![0.0; cols];
                    dequantize(QuantFormat::Q8_0, bytemuck::cast_slice(b), &mut out).unwrap();
                    out
                }
                Activations::Q8_1(b) => {
                    b.iter().flat_map(|b| b.qs.map(|q| q as f32 * f16::from_le_bytes(b.d).to_f32())).collect()
                }
            };
            let want = matvec_reference(&wd, &xd, rows, cols).unwrap();
            let got = matvec_quant(format, &bytes, rows, cols, &act).unwrap();
            for (r, (g, e)) in got.iter().zip(&want).enumerate() {
                // Q4_1 folds m through the f16 block sum s, so allow for its rounding.
                let tol = 2e-3 * e.abs().max(1.0) + if format == QuantFormat::Q4_1 { 0.05 } else { 0.0 };
                assert!((g - e).abs() <= tol, "{format} row {r}: {g} vs {e}");
            }
            // And against the exact f32 product: quantisation error stays small.
            let exact = matvec_reference(&w, &x, rows, cols).unwrap();
            let scale = exact.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let worst = got.iter().zip(&exact).map(|(g, e)| (g - e).abs()).fold(0.0, f32::max);
            assert!(worst <= 0.1 * scale, "{format}: worst {worst}, scale {scale}");
        }
    }

    #[test]
    fn matmul_equals_one_matvec_per_vector() {
        let (rows, cols) = (19, 64);
        let bytes = encode(QuantFormat::Q4_1, &values(rows * cols, 3));
        let xs: Vec<Activations> =
            (0..5).map(|t| Activations::for_weights(QuantFormat::Q4_1, &values(cols, 10 + t)).unwrap()).collect();
        let batch = matmul_quant(QuantFormat::Q4_1, &bytes, rows, cols, &xs).unwrap();
        for (t, x) in xs.iter().enumerate() {
            let one = matvec_quant(QuantFormat::Q4_1, &bytes, rows, cols, x).unwrap();
            assert_eq!(&batch[t * rows..(t + 1) * rows], one.as_slice(), "vector {t}");
        }
    }

    #[test]
    fn shapes_are_checked() {
        let act = Activations::for_weights(QuantFormat::Q4_0, &[0.0; 64]).unwrap();
        assert!(matvec_quant(QuantFormat::Q4_0, &[0; 36], 2, 64, &act).is_err(), "2 rows need 72 bytes");
        assert!(matvec_quant(QuantFormat::Q4_0, &[0; 36], 1, 33, &act).is_err(), "33 is not whole blocks");
        assert!(matvec_quant(QuantFormat::Q4_0, &[0; 72], 2, 64, &act).is_ok());
        let act = Activations::for_weights(QuantFormat::Q4_0, &[0.0; 32]).unwrap();
        assert!(matvec_quant(QuantFormat::Q4_0, &[0; 72], 2, 64, &act).is_err(), "x too short");
        assert!(Activations::for_weights(QuantFormat::Q6_K, &[0.0; 256]).is_err());
    }
}
