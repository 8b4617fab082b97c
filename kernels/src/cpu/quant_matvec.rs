//! `y = W x` with `W` in a GGUF format, as llama.cpp computes it on the CPU: the activations
//! are converted once to the weight format's `vec_dot_format` (Q8_0, Q8_1, F16 or F32), then
//! each row's dot product runs on integers per block and is scaled back in f32.
//!
//! The float steps follow llama.cpp's portable (`_generic`) kernels operation for operation, so
//! the results are bit-identical to it: the integer sums are exact whatever their order (and
//! vectorise freely), and the per-block scaling is a short sequential chain.

use half::f16;
use rayon::prelude::*;

use super::interleave::{GROUP, RowLayout, deinterleave_group};
#[cfg(target_arch = "x86_64")]
use super::quant_avx2;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use super::quant_simd128;
use crate::KernelError;
use crate::quant::{BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockQ8_1, QuantFormat, blocks, quantize_q8_0, quantize_q8_1};

/// Rows handed to one rayon task: whole interleaved groups.
const ROWS_PER_TASK: usize = 2 * GROUP;

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
pub(super) fn half(bits: [u8; 2]) -> f32 {
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
    matmul_quant_layout(format, RowLayout::Plain, w, rows, cols, xs)
}

/// [`matmul_quant`] for weights whose rows `layout` describes (see [`super::interleave`]).
pub fn matmul_quant_layout(
    format: QuantFormat,
    layout: RowLayout,
    w: &[u8],
    rows: usize,
    cols: usize,
    xs: &[Activations],
) -> Result<Vec<f32>, KernelError> {
    let weights = QuantWeights { format, layout, data: w, rows, cols };
    Ok(matmul_quant_many(&[weights], xs)?.remove(0))
}

/// A quantised matrix: `rows` rows of `cols` values of `format`, laid out as `layout` says.
#[derive(Clone, Copy, Debug)]
pub struct QuantWeights<'a> {
    pub format: QuantFormat,
    pub layout: RowLayout,
    pub data: &'a [u8],
    pub rows: usize,
    pub cols: usize,
}

impl QuantWeights<'_> {
    /// Bytes per row, after checking the data and every vector of `xs` against the shape.
    fn row_bytes(&self, xs: &[Activations]) -> Result<usize, KernelError> {
        let Self { format, rows, cols, .. } = *self;
        let row_bytes = format.bytes_for(cols as u64).and_then(|b| usize::try_from(b).ok());
        let row_bytes = row_bytes.ok_or(KernelError::QuantLength { format, values: cols, bytes: 0 })?;
        if rows.checked_mul(row_bytes) != Some(self.data.len()) {
            return Err(KernelError::QuantLength { format, values: rows.saturating_mul(cols), bytes: self.data.len() });
        }
        if let Some(x) = xs.iter().find(|x| x.len() != cols) {
            let matrix_len = rows.saturating_mul(cols);
            return Err(KernelError::MatvecShape { rows, cols, matrix_len, vector_len: x.len() });
        }
        Ok(row_bytes)
    }
}

/// [`matmul_quant_layout`] for several matrices with the same input (attention's q, k and v;
/// the MLP's gate and up): one `[xs.len()][rows]` result per matrix. Their rows are shared out
/// as one set of tasks, so the pool forks and joins once for all of them: each join makes a
/// thread wait for the slowest task, and there are hundreds per token.
pub fn matmul_quant_many(mats: &[QuantWeights<'_>], xs: &[Activations]) -> Result<Vec<Vec<f32>>, KernelError> {
    let n = xs.len();
    let row_bytes = mats.iter().map(|m| m.row_bytes(xs)).collect::<Result<Vec<_>, _>>()?;
    // Row-major [rows][n] while computing (each task owns whole rows), transposed at the end.
    let mut by_row: Vec<Vec<f32>> = mats.iter().map(|m| vec![0.0f32; m.rows * n]).collect();
    let mut tasks = Vec::new();
    for ((m, &row_bytes), out) in mats.iter().zip(&row_bytes).zip(&mut by_row) {
        if row_bytes == 0 || n == 0 {
            continue;
        }
        let rows_of = RowsOf { format: m.format, layout: m.layout, row_bytes };
        let chunks = out.chunks_mut(ROWS_PER_TASK * n).zip(m.data.chunks(ROWS_PER_TASK * row_bytes));
        tasks.extend(chunks.map(|(out, w_block)| (rows_of, w_block, out)));
    }
    tasks.into_par_iter().try_for_each(|(rows_of, w_block, out)| dot_rows(rows_of, w_block, xs, out))?;
    Ok(by_row.into_iter().zip(mats).map(|(by_row, m)| by_vector(by_row, m.rows, n)).collect())
}

/// `[rows][n]` results as `[n][rows]`.
fn by_vector(by_row: Vec<f32>, rows: usize, n: usize) -> Vec<f32> {
    if n == 1 {
        return by_row;
    }
    let mut by_vector = vec![0.0f32; rows * n];
    for (r, row) in by_row.chunks_exact(n).enumerate() {
        for (t, &v) in row.iter().enumerate() {
            by_vector[t * rows + r] = v;
        }
    }
    by_vector
}

/// What the row kernels need to know of a matrix besides its bytes. A task's bytes always
/// start at a row that is a multiple of [`ROWS_PER_TASK`], so at a whole interleaved group.
#[derive(Clone, Copy)]
struct RowsOf {
    format: QuantFormat,
    layout: RowLayout,
    row_bytes: usize,
}

impl RowsOf {
    /// Splits `w_block` into its whole interleaved groups and the plain rows after them.
    fn split<'a>(&self, w_block: &'a [u8]) -> (&'a [u8], &'a [u8]) {
        let groups = match self.layout {
            RowLayout::Interleaved => w_block.len() / (GROUP * self.row_bytes),
            RowLayout::Plain => 0,
        };
        w_block.split_at(groups * GROUP * self.row_bytes)
    }
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

/// [`rows_portable`] for any layout: interleaved groups are put back in file order first.
/// (Only CPUs with SIMD kernels interleave, so this is the slow path for a rare case.)
fn rows_portable_any(rows_of: RowsOf, w_block: &[u8], xs: &[Activations], out: &mut [f32]) -> Result<(), KernelError> {
    let RowsOf { format, row_bytes, .. } = rows_of;
    let (groups, rest) = rows_of.split(w_block);
    let (out_groups, out_rest) = out.split_at_mut(groups.len() / row_bytes * xs.len());
    for (group, out) in groups.chunks_exact(GROUP * row_bytes).zip(out_groups.chunks_exact_mut(GROUP * xs.len())) {
        rows_portable(format, &deinterleave_group(format, group, row_bytes), row_bytes, xs, out)?;
    }
    rows_portable(format, rest, row_bytes, xs, out_rest)
}

/// Whether [`rows_avx2`] may run: the CPU has AVX2 and F16C (checked once, then cached).
#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("f16c")
}

/// Eight rows' dot products with `x` by the AVX2 kernel for the format and layout; `group`
/// holds the rows, `ahead` is where the next group starts (to prefetch).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
fn group_avx2(
    rows_of: RowsOf,
    group: &[u8],
    x: &Activations,
    ahead: *const u8,
) -> Result<[f32; quant_avx2::ROWS], KernelError> {
    use quant_avx2 as k;
    let interleaved = rows_of.layout == RowLayout::Interleaved;
    Ok(match (rows_of.format, x) {
        (QuantFormat::Q4_0, Activations::Q8_0(xq)) if interleaved => k::q4_0_q8_0_interleaved(group, xq, ahead),
        (QuantFormat::Q4_1, Activations::Q8_1(xq)) if interleaved => k::q4_1_q8_1_interleaved(group, xq, ahead),
        (QuantFormat::Q8_0, Activations::Q8_0(xq)) if interleaved => k::q8_0_q8_0_interleaved(group, xq, ahead),
        (QuantFormat::Q4_0, Activations::Q8_0(xq)) => k::q4_0_q8_0(split(blocks(group)?), xq, ahead),
        (QuantFormat::Q4_1, Activations::Q8_1(xq)) => k::q4_1_q8_1(split(blocks(group)?), xq, ahead),
        (QuantFormat::Q8_0, Activations::Q8_0(xq)) => k::q8_0_q8_0(split(blocks(group)?), xq, ahead),
        (format, _) => return Err(KernelError::UnsupportedFormat(format)),
    })
}

/// [`rows_portable`] with the quantised formats eight rows at a time in [`quant_avx2`];
/// leftover rows and float formats take the portable loop, compiled for AVX2 as well.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
fn rows_avx2(rows_of: RowsOf, w_block: &[u8], xs: &[Activations], out: &mut [f32]) -> Result<(), KernelError> {
    use quant_avx2::ROWS;
    let RowsOf { format, row_bytes, .. } = rows_of;
    if !matches!(format, QuantFormat::Q4_0 | QuantFormat::Q4_1 | QuantFormat::Q8_0) {
        return rows_portable(format, w_block, row_bytes, xs, out);
    }
    let n = xs.len();
    let groups = w_block.len() / (ROWS * row_bytes);
    let (w_groups, w_rest) = w_block.split_at(groups * ROWS * row_bytes);
    let (out_groups, out_rest) = out.split_at_mut(groups * ROWS * n);
    for (w_group, out_group) in w_groups.chunks_exact(ROWS * row_bytes).zip(out_groups.chunks_exact_mut(ROWS * n)) {
        // The next group starts where this one ends.
        let ahead = w_group.as_ptr_range().end;
        for (t, x) in xs.iter().enumerate() {
            for (r, v) in group_avx2(rows_of, w_group, x, ahead)?.into_iter().enumerate() {
                out_group[r * n + t] = v;
            }
        }
    }
    rows_portable(format, w_rest, row_bytes, xs, out_rest)
}

/// [`rows_portable`] with the quantised formats four rows at a time in [`quant_simd128`]
/// (file layout only: wasm never interleaves).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn rows_simd128(rows_of: RowsOf, w_block: &[u8], xs: &[Activations], out: &mut [f32]) -> Result<(), KernelError> {
    use quant_simd128::ROWS;
    let RowsOf { format, layout, row_bytes } = rows_of;
    let quantised = matches!(format, QuantFormat::Q4_0 | QuantFormat::Q4_1 | QuantFormat::Q8_0);
    if !quantised || layout != RowLayout::Plain {
        return rows_portable_any(rows_of, w_block, xs, out);
    }
    let n = xs.len();
    let groups = w_block.len() / (ROWS * row_bytes);
    let (w_groups, w_rest) = w_block.split_at(groups * ROWS * row_bytes);
    let (out_groups, out_rest) = out.split_at_mut(groups * ROWS * n);
    for (w_group, out_group) in w_groups.chunks_exact(ROWS * row_bytes).zip(out_groups.chunks_exact_mut(ROWS * n)) {
        for (t, x) in xs.iter().enumerate() {
            let y = match (format, x) {
                (QuantFormat::Q4_0, Activations::Q8_0(xq)) => quant_simd128::q4_0_q8_0(split(blocks(w_group)?), xq),
                (QuantFormat::Q4_1, Activations::Q8_1(xq)) => quant_simd128::q4_1_q8_1(split(blocks(w_group)?), xq),
                (QuantFormat::Q8_0, Activations::Q8_0(xq)) => quant_simd128::q8_0_q8_0(split(blocks(w_group)?), xq),
                (format, _) => return Err(KernelError::UnsupportedFormat(format)),
            };
            for (r, v) in y.into_iter().enumerate() {
                out_group[r * n + t] = v;
            }
        }
    }
    rows_portable(format, w_rest, row_bytes, xs, out_rest)
}

/// `all` (whole rows of equal length) as `R` rows.
#[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
fn split<B, const R: usize>(all: &[B]) -> [&[B]; R] {
    let per_row = all.len() / R;
    std::array::from_fn(|r| &all[r * per_row..(r + 1) * per_row])
}

fn dot_rows(rows_of: RowsOf, w_block: &[u8], xs: &[Activations], out: &mut [f32]) -> Result<(), KernelError> {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2 and F16C, checked just above.
        return unsafe { rows_avx2(rows_of, w_block, xs, out) };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        rows_simd128(rows_of, w_block, xs, out)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        rows_portable_any(rows_of, w_block, xs, out)
    }
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

    /// xorshift64: reproducible bytes without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn bytes<const N: usize>(&mut self) -> [u8; N] {
            std::array::from_fn(|_| self.next() as u8)
        }

        /// A scale as f16 bytes: either sign, magnitudes from subnormal to large, some zeros.
        fn scale(&mut self) -> [u8; 2] {
            let r = self.next();
            let v = if r.is_multiple_of(17) {
                0.0
            } else {
                ((r >> 8) % 1000) as f32 / 997.0 * 2f32.powi(((r >> 32) % 40) as i32 - 26)
            };
            f16::from_f32(if r & 1 == 0 { v } else { -v }).to_le_bytes()
        }

        /// A quantised activation byte: within ±127, as the Q8 quantisers produce.
        fn q8(&mut self) -> i8 {
            (self.next() % 255) as i8 - 127
        }
    }

    /// Blocks of `format` with arbitrary bits (weights need not come from our quantiser).
    fn random_weights(format: QuantFormat, blocks: usize, rng: &mut Rng) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..blocks {
            match format {
                QuantFormat::Q4_0 => out.extend(bytemuck::bytes_of(&BlockQ4_0 { d: rng.scale(), qs: rng.bytes() })),
                QuantFormat::Q4_1 => {
                    out.extend(bytemuck::bytes_of(&BlockQ4_1 { d: rng.scale(), m: rng.scale(), qs: rng.bytes() }))
                }
                QuantFormat::Q8_0 => out
                    .extend(bytemuck::bytes_of(&BlockQ8_0 { d: rng.scale(), qs: rng.bytes::<32>().map(|b| b as i8) })),
                other => panic!("no random blocks for {other}"),
            }
        }
        out
    }

    fn random_activations(format: QuantFormat, blocks: usize, rng: &mut Rng) -> Activations {
        match format.vec_dot_format() {
            QuantFormat::Q8_0 => Activations::Q8_0(
                (0..blocks).map(|_| BlockQ8_0 { d: rng.scale(), qs: std::array::from_fn(|_| rng.q8()) }).collect(),
            ),
            QuantFormat::Q8_1 => Activations::Q8_1(
                (0..blocks)
                    .map(|_| BlockQ8_1 { d: rng.scale(), s: rng.scale(), qs: std::array::from_fn(|_| rng.q8()) })
                    .collect(),
            ),
            other => panic!("no random activations for {other}"),
        }
    }

    #[test]
    fn simd_rows_are_bit_identical_to_the_portable_dot() {
        // Row counts with and without a partial group of SIMD rows; several vectors (prefill).
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for format in [QuantFormat::Q4_0, QuantFormat::Q4_1, QuantFormat::Q8_0] {
            for (rows, blocks) in [(8, 1), (29, 7), (64, 18), (5, 3)] {
                let cols = blocks * 32;
                let w = random_weights(format, rows * blocks, &mut rng);
                let xs: Vec<Activations> = (0..3).map(|_| random_activations(format, blocks, &mut rng)).collect();
                let mut interleaved = w.clone();
                crate::cpu::interleave::interleave_rows_always(format, &mut interleaved, rows, cols).unwrap();
                let row_bytes = w.len() / rows;
                // The portable loop over interleaved rows, as a CPU without the SIMD kernels runs it.
                let mut portable = vec![0.0; rows * xs.len()];
                let rows_of = RowsOf { format, layout: RowLayout::Interleaved, row_bytes };
                rows_portable_any(rows_of, &interleaved, &xs, &mut portable).unwrap();
                let portable: Vec<f32> =
                    (0..rows * xs.len()).map(|i| portable[i % rows * xs.len() + i / rows]).collect();
                for (layout, got) in [
                    ("plain", matmul_quant(format, &w, rows, cols, &xs).unwrap()),
                    (
                        "interleaved",
                        matmul_quant_layout(format, RowLayout::Interleaved, &interleaved, rows, cols, &xs).unwrap(),
                    ),
                    ("interleaved, portable", portable),
                ] {
                    for (t, x) in xs.iter().enumerate() {
                        for (r, row) in w.chunks_exact(row_bytes).enumerate() {
                            let want = dot_row(format, row, x).unwrap();
                            let g = got[t * rows + r];
                            let at = format!("{format} {layout} {rows}x{cols} vector {t} row {r}");
                            assert_eq!(g.to_bits(), want.to_bits(), "{at}: {g} vs {want}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn many_matrices_equal_one_at_a_time() {
        let cols = 64;
        let xs: Vec<Activations> =
            (0..2).map(|t| Activations::for_weights(QuantFormat::Q4_1, &values(cols, 20 + t)).unwrap()).collect();
        let data: Vec<Vec<u8>> =
            [40, 8, 3].iter().map(|&rows| encode(QuantFormat::Q4_1, &values(rows * cols, rows))).collect();
        let mats: Vec<QuantWeights> = data
            .iter()
            .map(|d| QuantWeights {
                format: QuantFormat::Q4_1,
                layout: RowLayout::Plain,
                data: d,
                rows: d.len() / 40,
                cols,
            })
            .collect();
        let many = matmul_quant_many(&mats, &xs).unwrap();
        for (m, got) in mats.iter().zip(&many) {
            assert_eq!(got, &matmul_quant(m.format, m.data, m.rows, cols, &xs).unwrap(), "{} rows", m.rows);
        }
        let short = QuantWeights { rows: 2, ..mats[0] };
        assert!(matmul_quant_many(&[mats[1], short], &xs).is_err(), "every matrix is checked");
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
