//! `y = W x` with `W` in a GGUF format, as llama.cpp computes it on the CPU: the activations
//! are converted once to the weight format's `vec_dot_format` (Q8_0, Q8_1, Q8_K, F16, BF16 or
//! F32), then each row's dot product runs on integers per block and is scaled back in f32.
//!
//! The float steps follow llama.cpp's portable (`_generic`) kernels operation for operation, so
//! the results are bit-identical to it: the integer sums are exact whatever their order (and
//! vectorise freely), and the per-block scaling is a short sequential chain. (The K-quant
//! kernels keep eight f32 partial sums, one per lane of eight values, as llama.cpp's do.)

use half::f16;
use rayon::prelude::*;

use super::SimdLevel;
use super::interleave::{GROUP, RowLayout, deinterleave_group};
use super::pool;
#[cfg(target_arch = "x86_64")]
use super::quant_avx2;
#[cfg(target_arch = "x86_64")]
use super::quant_avx512;
#[cfg(target_arch = "aarch64")]
use super::quant_neon;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use super::quant_simd128;
use crate::KernelError;
use crate::quant::{
    BlockQ4_0, BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ5_1, BlockQ5K, BlockQ6K, BlockQ8_0, BlockQ8_1, BlockQ8K,
    QuantFormat, bf16_to_f32, blocks, quantize_bf16, quantize_q8_k, scales_mins_k4,
};

/// Rows handed to one rayon task: whole interleaved groups.
const ROWS_PER_TASK: usize = 2 * GROUP;

/// Activations prepared for one weight format's dot product.
pub enum Activations {
    F32(Vec<f32>),
    F16(Vec<f16>),
    /// bf16 bits.
    BF16(Vec<u16>),
    Q8_0(Vec<BlockQ8_0>),
    Q8_1(Vec<BlockQ8_1>),
    #[allow(non_camel_case_types)]
    Q8_K(Vec<BlockQ8K>),
}

impl Activations {
    /// Converts `x` for dot products with `weights`-format rows.
    pub fn for_weights(weights: QuantFormat, x: &[f32]) -> Result<Self, KernelError> {
        // The quantisers only fail on a length that is not whole blocks; name the weights'
        // format, whose blocks are as long, rather than the activations' the caller never chose.
        let ragged = |_| KernelError::RaggedValues { format: weights, values: x.len() };
        Ok(match weights.vec_dot_format() {
            QuantFormat::F32 => Self::F32(x.to_vec()),
            QuantFormat::F16 => Self::F16(x.iter().map(|&v| f16::from_f32(v)).collect()),
            QuantFormat::BF16 => Self::BF16(quantize_bf16(x)),
            QuantFormat::Q8_0 => Self::Q8_0(super::quantize::q8_0(x).map_err(ragged)?),
            QuantFormat::Q8_1 => Self::Q8_1(super::quantize::q8_1(x).map_err(ragged)?),
            QuantFormat::Q8_K => Self::Q8_K(quantize_q8_k(x).map_err(ragged)?),
            other => return Err(KernelError::UnsupportedFormat(other)),
        })
    }

    /// The Q8_0 blocks, if these are.
    #[cfg(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        all(target_arch = "wasm32", target_feature = "simd128")
    ))]
    fn q8_0(&self) -> Option<&[BlockQ8_0]> {
        if let Self::Q8_0(b) = self { Some(b) } else { None }
    }

    /// The Q8_1 blocks, if these are.
    #[cfg(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        all(target_arch = "wasm32", target_feature = "simd128")
    ))]
    fn q8_1(&self) -> Option<&[BlockQ8_1]> {
        if let Self::Q8_1(b) = self { Some(b) } else { None }
    }

    fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::F16(v) => v.len(),
            Self::BF16(v) => v.len(),
            Self::Q8_0(v) => v.len() * 32,
            Self::Q8_1(v) => v.len() * 32,
            Self::Q8_K(v) => v.len() * 256,
        }
    }
}

/// Every f16 bit pattern as f32 (256 KiB), as ggml's `table_f32_f16`: a lookup beats the
/// conversion in the inner loop, and is exact.
static F16_TO_F32: std::sync::LazyLock<Box<[f32]>> =
    std::sync::LazyLock::new(|| (0..=u16::MAX).map(|b| crate::quant::half(b.to_le_bytes())).collect());

/// [`crate::quant::half`] by the table: the CPU kernels' one f16 conversion.
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

/// Σ q · x over a 32-value Q5 block, q = 5-bit value - `offset`: the low 4 bits as
/// [`nibbles_dot`], the fifth of value j in bit j of `qh`.
#[inline(always)]
fn five_bits_dot(qs: &[u8; 16], qh: u32, x: &[i8; 32], offset: i16) -> i32 {
    let mut acc = [0i32; 16];
    for j in 0..16 {
        let lo = (qs[j] & 0x0f) as i16 | (((qh >> j) & 1) << 4) as i16;
        let hi = (qs[j] >> 4) as i16 | (((qh >> (j + 16)) & 1) << 4) as i16;
        acc[j] = ((lo - offset) * x[j] as i16) as i32 + ((hi - offset) * x[j + 16] as i16) as i32;
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

/// llama.cpp `ggml_vec_dot_q5_0_q8_0`: per block `(d_w d_x) · Σ (q_w - 16) q_x`.
#[inline(always)]
pub fn dot_q5_0_q8_0(w: &[BlockQ5_0], x: &[BlockQ8_0]) -> f32 {
    w.iter()
        .zip(x)
        .map(|(bw, bx)| {
            let sum = five_bits_dot(&bw.qs, u32::from_le_bytes(bw.qh), &bx.qs, 16);
            (half(bw.d) * half(bx.d)) * sum as f32
        })
        .fold(0.0, |acc, v| acc + v)
}

/// llama.cpp `ggml_vec_dot_q5_1_q8_1`: per block `(d_w d_x) · Σ q_w q_x + m_w s_x`, as
/// [`dot_q4_1_q8_1`].
#[inline(always)]
pub fn dot_q5_1_q8_1(w: &[BlockQ5_1], x: &[BlockQ8_1]) -> f32 {
    w.iter()
        .zip(x)
        .map(|(bw, bx)| {
            let sum = five_bits_dot(&bw.qs, u32::from_le_bytes(bw.qh), &bx.qs, 0);
            (half(bw.d) * half(bx.d)) * sum as f32 + half(bw.m) * half(bx.s)
        })
        .fold(0.0, |acc, v| acc + v)
}

/// llama.cpp's `aux32` of a K-quant block: lane l (0..8) sums `scale · a · q` over the values
/// l, l + 8, l + 16, ... of the block, each 16-value sub-block with its own scale. Exact in
/// i32 (|a · q| <= 32 · 128, so the products fit i16 as there), so any order gives the lanes
/// llama.cpp's float steps then see.
#[inline(always)]
fn k_lanes(a: &[i8; 256], q: &[i8; 256], scales: &[i32; 16]) -> [i32; 8] {
    let mut aux32 = [0i32; 8];
    let (a, q) = (a.as_chunks::<16>().0, q.as_chunks::<16>().0);
    for ((a, q), &scale) in a.iter().zip(q).zip(scales) {
        for l in 0..8 {
            let p = (a[l] as i16 * q[l] as i16) as i32 + (a[l + 8] as i16 * q[l + 8] as i16) as i32;
            aux32[l] += scale * p;
        }
    }
    aux32
}

/// One K-quant block reduced to integers, for [`k_float_steps`].
struct KBlock {
    /// The weights' and the activations' scales.
    d_w: f32,
    d_x: f32,
    aux32: [i32; 8],
    /// The weights' `dmin` and Σ bsums · mins, for the formats with mins.
    mins: Option<(f32, i32)>,
}

/// The float steps shared by the K-quant kernels: per block `sums[l] += (d_w d_x) aux32[l]`
/// and `sumf -= (dmin_w d_x) Σ bsums · mins`; then the eight `sums` added to `sumf`.
#[inline(always)]
fn k_float_steps(blocks: impl Iterator<Item = KBlock>) -> f32 {
    let mut sums = [0.0f32; 8];
    let mut sumf = 0.0f32;
    for KBlock { d_w, d_x, aux32, mins } in blocks {
        let d = d_w * d_x;
        for (s, &a) in sums.iter_mut().zip(&aux32) {
            *s += d * a as f32;
        }
        if let Some((dmin_w, sumi)) = mins {
            let dmin = dmin_w * d_x;
            sumf -= dmin * sumi as f32;
        }
    }
    sums.iter().fold(sumf, |acc, &s| acc + s)
}

/// Σ bsums[j] · mins[j / 2]: what the sub-blocks' mins take off a Q4_K/Q5_K block's sum.
#[inline(always)]
fn k_mins(bx: &BlockQ8K, mins: &[u8; 8]) -> i32 {
    bx.bsums().iter().enumerate().map(|(j, &s)| i32::from(s) * i32::from(mins[j / 2])).sum()
}

/// Each 32-value sub-block's scale, once per 16 values ([`k_lanes`]'s granularity).
#[inline(always)]
fn per_16(scales: &[u8; 8]) -> [i32; 16] {
    std::array::from_fn(|j| i32::from(scales[j / 2]))
}

/// llama.cpp `ggml_vec_dot_q4_K_q8_K`: per block `sums[l] += d_w d_x aux32[l]` and
/// `sumf -= dmin_w d_x Σ bsums · mins`, the eight `sums` added last.
#[inline(always)]
pub fn dot_q4_k_q8_k(w: &[BlockQ4K], x: &[BlockQ8K]) -> f32 {
    k_float_steps(w.iter().zip(x).map(|(bw, bx)| {
        // Each 32 bytes of qs: the low nibbles are one sub-block, the high nibbles the next.
        let mut a = [0i8; 256];
        for (a, q) in a.as_chunks_mut::<64>().0.iter_mut().zip(bw.qs.as_chunks::<32>().0) {
            for l in 0..32 {
                a[l] = (q[l] & 0x0f) as i8;
                a[l + 32] = (q[l] >> 4) as i8;
            }
        }
        let (scales, mins) = scales_mins_k4(&bw.scales);
        let aux32 = k_lanes(&a, &bx.qs, &per_16(&scales));
        KBlock { d_w: half(bw.d), d_x: bx.d(), aux32, mins: Some((half(bw.dmin), k_mins(bx, &mins))) }
    }))
}

/// llama.cpp `ggml_vec_dot_q5_K_q8_K`: [`dot_q4_k_q8_k`] with a fifth bit per value.
#[inline(always)]
pub fn dot_q5_k_q8_k(w: &[BlockQ5K], x: &[BlockQ8K]) -> f32 {
    k_float_steps(w.iter().zip(x).map(|(bw, bx)| {
        let mut a = [0i8; 256];
        for (g, (a, q)) in a.as_chunks_mut::<64>().0.iter_mut().zip(bw.qs.as_chunks::<32>().0).enumerate() {
            let (m1, m2) = (1u8 << (2 * g), 2u8 << (2 * g));
            for l in 0..32 {
                a[l] = ((q[l] & 0x0f) + if bw.qh[l] & m1 != 0 { 16 } else { 0 }) as i8;
                a[l + 32] = ((q[l] >> 4) + if bw.qh[l] & m2 != 0 { 16 } else { 0 }) as i8;
            }
        }
        let (scales, mins) = scales_mins_k4(&bw.scales);
        let aux32 = k_lanes(&a, &bx.qs, &per_16(&scales));
        KBlock { d_w: half(bw.d), d_x: bx.d(), aux32, mins: Some((half(bw.dmin), k_mins(bx, &mins))) }
    }))
}

/// llama.cpp `ggml_vec_dot_q6_K_q8_K`: per block `sums[l] += d_w d_x aux32[l]` (no mins:
/// q is offset by 32 instead), the eight `sums` added last.
#[inline(always)]
pub fn dot_q6_k_q8_k(w: &[BlockQ6K], x: &[BlockQ8K]) -> f32 {
    k_float_steps(w.iter().zip(x).map(|(bw, bx)| {
        // Each 128-value half: 64 bytes of ql (low nibbles, then high) and 32 of qh (2 bits each).
        let mut a = [0i8; 256];
        let halves = bw.ql.as_chunks::<64>().0.iter().zip(bw.qh.as_chunks::<32>().0);
        for (a, (ql, qh)) in a.as_chunks_mut::<128>().0.iter_mut().zip(halves) {
            for l in 0..32 {
                a[l] = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i8 - 32;
                a[l + 32] = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                a[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                a[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            }
        }
        let aux32 = k_lanes(&a, &bx.qs, &bw.scales.map(i32::from));
        KBlock { d_w: half(bw.d), d_x: bx.d(), aux32, mins: None }
    }))
}

/// llama.cpp `ggml_vec_dot_f16`: products of halves are exact in f32, summed in f64.
#[inline(always)]
fn dot_f16(w: &[u8], x: &[f16]) -> f32 {
    w.chunks_exact(2).zip(x).fold(0.0f64, |acc, (c, xv)| acc + f64::from(half([c[0], c[1]]) * xv.to_f32())) as f32
}

/// llama.cpp `ggml_vec_dot_bf16` (portable loop): products of bf16 values are exact in f32,
/// summed in f64.
#[inline(always)]
fn dot_bf16(w: &[u8], x: &[u16]) -> f32 {
    w.as_chunks::<2>()
        .0
        .iter()
        .zip(x)
        .fold(0.0f64, |acc, (&c, &xv)| acc + f64::from(bf16_to_f32(u16::from_le_bytes(c)) * bf16_to_f32(xv))) as f32
}

/// llama.cpp `ggml_vec_dot_f32` (portable): f32 products summed in f64.
#[inline(always)]
fn dot_f32(w: &[u8], x: &[f32]) -> f32 {
    w.chunks_exact(4)
        .zip(x)
        .fold(0.0f64, |acc, (c, xv)| acc + f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]) * xv)) as f32
}

/// One row's dot product; `row` holds exactly `x.len()` values of `format`.
#[inline(always)]
fn dot_row(format: QuantFormat, row: &[u8], x: &Activations) -> Result<f32, KernelError> {
    Ok(match (format, x) {
        (QuantFormat::Q4_0, Activations::Q8_0(xq)) => dot_q4_0_q8_0(blocks(row)?, xq),
        (QuantFormat::Q4_1, Activations::Q8_1(xq)) => dot_q4_1_q8_1(blocks(row)?, xq),
        (QuantFormat::Q8_0, Activations::Q8_0(xq)) => dot_q8_0_q8_0(blocks(row)?, xq),
        (QuantFormat::Q5_0, Activations::Q8_0(xq)) => dot_q5_0_q8_0(blocks(row)?, xq),
        (QuantFormat::Q5_1, Activations::Q8_1(xq)) => dot_q5_1_q8_1(blocks(row)?, xq),
        (QuantFormat::Q4_K, Activations::Q8_K(xq)) => dot_q4_k_q8_k(blocks(row)?, xq),
        (QuantFormat::Q5_K, Activations::Q8_K(xq)) => dot_q5_k_q8_k(blocks(row)?, xq),
        (QuantFormat::Q6_K, Activations::Q8_K(xq)) => dot_q6_k_q8_k(blocks(row)?, xq),
        (QuantFormat::F16, Activations::F16(xh)) => dot_f16(row, xh),
        (QuantFormat::BF16, Activations::BF16(xb)) => dot_bf16(row, xb),
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
        if !cols.is_multiple_of(format.block_size()) {
            return Err(KernelError::RaggedValues { format, values: cols });
        }
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
    tasks
        .into_par_iter()
        .try_for_each(|(rows_of, w_block, out)| pool::timed(|| dot_rows(rows_of, w_block, xs, out)))?;
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

/// Eight rows' dot products with `x` by the AVX2 kernel for the format, rows in the file's
/// layout; `group` holds the rows, `ahead` is where the next group starts (to prefetch).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
fn plain_group_avx2(
    format: QuantFormat,
    group: &[u8],
    x: &Activations,
    ahead: *const u8,
) -> Result<[f32; quant_avx2::ROWS], KernelError> {
    use quant_avx2 as k;
    Ok(match (format, x) {
        (QuantFormat::Q4_0, Activations::Q8_0(xq)) => k::q4_0_q8_0(split(blocks(group)?), xq, ahead),
        (QuantFormat::Q4_1, Activations::Q8_1(xq)) => k::q4_1_q8_1(split(blocks(group)?), xq, ahead),
        (QuantFormat::Q8_0, Activations::Q8_0(xq)) => k::q8_0_q8_0(split(blocks(group)?), xq, ahead),
        (format, _) => return Err(KernelError::UnsupportedFormat(format)),
    })
}

/// [`rows_portable`] with the quantised formats eight rows at a time in [`quant_avx2`]
/// (interleaved groups a tile of tokens at a time); leftover rows and float formats take the
/// portable loop, compiled for AVX2 as well.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
fn rows_avx2(rows_of: RowsOf, w_block: &[u8], xs: &[Activations], out: &mut [f32]) -> Result<(), KernelError> {
    use quant_avx2 as k;
    let RowsOf { format, layout, row_bytes } = rows_of;
    if !matches!(format, QuantFormat::Q4_0 | QuantFormat::Q4_1 | QuantFormat::Q8_0) {
        return rows_portable(format, w_block, row_bytes, xs, out);
    }
    let n = xs.len();
    let group_bytes = k::ROWS * row_bytes;
    let groups = w_block.len() / group_bytes;
    let (w_groups, w_rest) = w_block.split_at(groups * group_bytes);
    let (out_groups, out_rest) = out.split_at_mut(groups * k::ROWS * n);
    match (layout, format) {
        (RowLayout::Interleaved, _) => interleaved_tiles(format, w_groups, group_bytes, xs, out_groups, &AVX2_TILES)?,
        (RowLayout::Plain, _) => {
            for (w_group, out_group) in w_groups.chunks_exact(group_bytes).zip(out_groups.chunks_exact_mut(k::ROWS * n))
            {
                // The next group starts where this one ends.
                let ahead = w_group.as_ptr_range().end;
                for (t, x) in xs.iter().enumerate() {
                    for (r, v) in plain_group_avx2(format, w_group, x, ahead)?.into_iter().enumerate() {
                        out_group[r * n + t] = v;
                    }
                }
            }
        }
    }
    rows_portable(format, w_rest, row_bytes, xs, out_rest)
}

/// The four-row kernels of [`quant_simd128`] or [`quant_neon`]: four rows in the file's layout
/// against every vector, into `[row][x]`. `unsafe` where they need CPU features.
#[cfg(any(target_arch = "aarch64", all(target_arch = "wasm32", target_feature = "simd128")))]
struct FourRowKernels {
    q4_0: FourRowKernel<BlockQ4_0, BlockQ8_0>,
    q4_1: FourRowKernel<BlockQ4_1, BlockQ8_1>,
    q8_0: FourRowKernel<BlockQ8_0, BlockQ8_0>,
}

/// One of [`FourRowKernels`]: weight blocks `W`, activation blocks `B`.
#[cfg(any(target_arch = "aarch64", all(target_arch = "wasm32", target_feature = "simd128")))]
type FourRowKernel<W, B> = unsafe fn([&[W]; 4], &[&[B]], &mut [f32]);

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
const SIMD128_KERNELS: FourRowKernels =
    FourRowKernels { q4_0: quant_simd128::q4_0_q8_0, q4_1: quant_simd128::q4_1_q8_1, q8_0: quant_simd128::q8_0_q8_0 };

#[cfg(target_arch = "aarch64")]
const NEON_KERNELS: FourRowKernels =
    FourRowKernels { q4_0: quant_neon::q4_0_q8_0, q4_1: quant_neon::q4_1_q8_1, q8_0: quant_neon::q8_0_q8_0 };

/// [`rows_portable`] with the quantised formats four rows at a time by `kernels` (rows in the
/// file's layout: these CPUs never interleave); other formats and layouts take the portable loop.
///
/// # Safety
/// This CPU has the features `kernels` need.
#[cfg(any(target_arch = "aarch64", all(target_arch = "wasm32", target_feature = "simd128")))]
unsafe fn rows_by_four(
    rows_of: RowsOf,
    w_block: &[u8],
    xs: &[Activations],
    out: &mut [f32],
    kernels: &FourRowKernels,
) -> Result<(), KernelError> {
    /// Every whole group of four rows by `kernel`, then the rows left over one at a time.
    fn groups<W: bytemuck::Pod, B>(
        rows_of: RowsOf,
        w_block: &[u8],
        xs: &[Activations],
        xq: &[&[B]],
        out: &mut [f32],
        kernel: FourRowKernel<W, B>,
    ) -> Result<(), KernelError> {
        let RowsOf { format, row_bytes, .. } = rows_of;
        let n = xs.len();
        let groups = w_block.len() / (4 * row_bytes);
        let (w_groups, w_rest) = w_block.split_at(groups * 4 * row_bytes);
        let (out_groups, out_rest) = out.split_at_mut(groups * 4 * n);
        for (w_group, out_group) in w_groups.chunks_exact(4 * row_bytes).zip(out_groups.chunks_exact_mut(4 * n)) {
            // SAFETY: the caller of `rows_by_four` checked the kernels' CPU features.
            unsafe { kernel(split(blocks(w_group)?), xq, out_group) };
        }
        rows_portable(format, w_rest, row_bytes, xs, out_rest)
    }
    let format = rows_of.format;
    if rows_of.layout != RowLayout::Plain {
        return rows_portable_any(rows_of, w_block, xs, out);
    }
    match format {
        QuantFormat::Q4_0 => {
            let xq = activation_blocks(xs, format, Activations::q8_0)?;
            groups(rows_of, w_block, xs, &xq, out, kernels.q4_0)
        }
        QuantFormat::Q4_1 => {
            let xq = activation_blocks(xs, format, Activations::q8_1)?;
            groups(rows_of, w_block, xs, &xq, out, kernels.q4_1)
        }
        QuantFormat::Q8_0 => {
            let xq = activation_blocks(xs, format, Activations::q8_0)?;
            groups(rows_of, w_block, xs, &xq, out, kernels.q8_0)
        }
        _ => rows_portable_any(rows_of, w_block, xs, out),
    }
}

/// `all` (whole rows of equal length) as `R` rows.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64", all(target_arch = "wasm32", target_feature = "simd128")))]
fn split<B, const R: usize>(all: &[B]) -> [&[B]; R] {
    let per_row = all.len() / R;
    std::array::from_fn(|r| &all[r * per_row..(r + 1) * per_row])
}

/// The blocks of every activation vector, which must all be `B`'s format.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64", all(target_arch = "wasm32", target_feature = "simd128")))]
fn activation_blocks<B>(
    xs: &[Activations],
    format: QuantFormat,
    blocks_of: fn(&Activations) -> Option<&[B]>,
) -> Result<Vec<&[B]>, KernelError> {
    xs.iter().map(|x| blocks_of(x).ok_or(KernelError::UnsupportedFormat(format))).collect()
}

/// An x86 row kernel for `T` vectors of activation blocks `B`: (`R` rows' bytes, the vectors,
/// where to prefetch) → each vector's `R` row values. `unsafe`: it needs its CPU features.
#[cfg(target_arch = "x86_64")]
type TileKernel<B, const R: usize, const T: usize> = unsafe fn(&[u8], [&[B]; T], *const u8) -> [[f32; R]; T];

/// Every group of `R` rows (`group_bytes` each) of `groups` against every vector of `xs`, into
/// `out` (`[row][x]`): whole tiles of `T` vectors by `tile`, the vectors left over by `one`.
/// The callers have the kernels' CPU features (checked through [`SimdLevel`]).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn by_token_tiles<B, const R: usize, const T: usize>(
    groups: &[u8],
    group_bytes: usize,
    xs: &[&[B]],
    out: &mut [f32],
    tile: TileKernel<B, R, T>,
    one: TileKernel<B, R, 1>,
) {
    let n = xs.len();
    let whole = n / T * T;
    for (group, out_group) in groups.chunks_exact(group_bytes).zip(out.chunks_exact_mut(R * n)) {
        // The next group starts where this one ends.
        let ahead = group.as_ptr_range().end;
        let mut write = |t0: usize, ys: &[[f32; R]]| {
            for (i, y) in ys.iter().enumerate() {
                for (r, &v) in y.iter().enumerate() {
                    out_group[r * n + t0 + i] = v;
                }
            }
        };
        for t0 in (0..whole).step_by(T) {
            // SAFETY: the callers checked the CPU has the kernels' features.
            write(t0, &unsafe { tile(group, std::array::from_fn(|i| xs[t0 + i]), ahead) });
        }
        for (t0, &x) in xs.iter().enumerate().skip(whole) {
            // SAFETY: as above.
            write(t0, &unsafe { one(group, [x], ahead) });
        }
    }
}

/// The tile kernels of [`quant_avx2`] or [`quant_avx512`] for the interleaved layout: `R` rows
/// against `T` vectors, and against one.
#[cfg(target_arch = "x86_64")]
struct TileKernels<const R: usize, const T: usize> {
    q4_0: (TileKernel<BlockQ8_0, R, T>, TileKernel<BlockQ8_0, R, 1>),
    q4_1: (TileKernel<BlockQ8_1, R, T>, TileKernel<BlockQ8_1, R, 1>),
    q8_0: (TileKernel<BlockQ8_0, R, T>, TileKernel<BlockQ8_0, R, 1>),
}

#[cfg(target_arch = "x86_64")]
const AVX2_TILES: TileKernels<{ quant_avx2::ROWS }, { quant_avx2::TOKENS }> = {
    use quant_avx2 as k;
    TileKernels {
        q4_0: (k::q4_0_q8_0_interleaved, k::q4_0_q8_0_interleaved),
        q4_1: (k::q4_1_q8_1_interleaved, k::q4_1_q8_1_interleaved),
        q8_0: (k::q8_0_q8_0_interleaved, k::q8_0_q8_0_interleaved),
    }
};

#[cfg(target_arch = "x86_64")]
const AVX512_TILES: TileKernels<{ quant_avx512::ROWS }, { quant_avx512::TOKENS }> = {
    use quant_avx512 as k;
    TileKernels {
        q4_0: (k::q4_0_q8_0, k::q4_0_q8_0),
        q4_1: (k::q4_1_q8_1, k::q4_1_q8_1),
        q8_0: (k::q8_0_q8_0, k::q8_0_q8_0),
    }
};

/// [`by_token_tiles`] with the kernels for `format` (which must be one of `kernels`').
#[cfg(target_arch = "x86_64")]
fn interleaved_tiles<const R: usize, const T: usize>(
    format: QuantFormat,
    groups: &[u8],
    group_bytes: usize,
    xs: &[Activations],
    out: &mut [f32],
    kernels: &TileKernels<R, T>,
) -> Result<(), KernelError> {
    match format {
        QuantFormat::Q4_0 => {
            let (tile, one) = kernels.q4_0;
            by_token_tiles(groups, group_bytes, &activation_blocks(xs, format, Activations::q8_0)?, out, tile, one);
        }
        QuantFormat::Q4_1 => {
            let (tile, one) = kernels.q4_1;
            by_token_tiles(groups, group_bytes, &activation_blocks(xs, format, Activations::q8_1)?, out, tile, one);
        }
        QuantFormat::Q8_0 => {
            let (tile, one) = kernels.q8_0;
            by_token_tiles(groups, group_bytes, &activation_blocks(xs, format, Activations::q8_0)?, out, tile, one);
        }
        other => return Err(KernelError::UnsupportedFormat(other)),
    }
    Ok(())
}

/// [`rows_avx2`] with whole pairs of interleaved groups in [`quant_avx512`]; the group left
/// over (if any), plain layouts and other formats take the AVX2 path.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,f16c")]
fn rows_avx512(rows_of: RowsOf, w_block: &[u8], xs: &[Activations], out: &mut [f32]) -> Result<(), KernelError> {
    use quant_avx512 as k;
    let RowsOf { format, layout, row_bytes } = rows_of;
    let quantised = matches!(format, QuantFormat::Q4_0 | QuantFormat::Q4_1 | QuantFormat::Q8_0);
    if !quantised || layout != RowLayout::Interleaved {
        return rows_avx2(rows_of, w_block, xs, out);
    }
    let pair_bytes = k::ROWS * row_bytes;
    let pairs = w_block.len() / pair_bytes;
    let (w_pairs, w_rest) = w_block.split_at(pairs * pair_bytes);
    let (out_pairs, out_rest) = out.split_at_mut(pairs * k::ROWS * xs.len());
    interleaved_tiles(format, w_pairs, pair_bytes, xs, out_pairs, &AVX512_TILES)?;
    rows_avx2(rows_of, w_rest, xs, out_rest)
}

fn dot_rows(rows_of: RowsOf, w_block: &[u8], xs: &[Activations], out: &mut [f32]) -> Result<(), KernelError> {
    dot_rows_at(SimdLevel::detected(), rows_of, w_block, xs, out)
}

/// [`dot_rows`] by the kernels of `level`, which this CPU must have.
fn dot_rows_at(
    level: SimdLevel,
    rows_of: RowsOf,
    w_block: &[u8],
    xs: &[Activations],
    out: &mut [f32],
) -> Result<(), KernelError> {
    match level {
        // SAFETY: `level` is one this CPU has (see `SimdLevel::available`).
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512Vnni => unsafe { rows_avx512(rows_of, w_block, xs, out) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 => unsafe { rows_avx2(rows_of, w_block, xs, out) },
        // SAFETY: as above (SIMD128 is fixed at build time).
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        SimdLevel::Simd128 => unsafe { rows_by_four(rows_of, w_block, xs, out, &SIMD128_KERNELS) },
        // SAFETY: as above.
        #[cfg(target_arch = "aarch64")]
        SimdLevel::NeonDotprod => unsafe { rows_by_four(rows_of, w_block, xs, out, &NEON_KERNELS) },
        _ => rows_portable_any(rows_of, w_block, xs, out),
    }
}

#[cfg(test)]
// Nibble j pairs value j with value j + 16: indexed loops say so plainly.
#[allow(clippy::needless_range_loop)]
mod tests;
