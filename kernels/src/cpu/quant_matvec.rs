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
    QuantFormat, bf16_to_f32, blocks, quantize_bf16, quantize_q8_0, quantize_q8_1, quantize_q8_k, scales_mins_k4,
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
            QuantFormat::Q8_0 => Self::Q8_0(quantize_q8_0(x).map_err(ragged)?),
            QuantFormat::Q8_1 => Self::Q8_1(quantize_q8_1(x).map_err(ragged)?),
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

    /// The activations as the dot products see them, back in f32.
    fn seen(act: &Activations) -> Vec<f32> {
        let dequantized = |format: QuantFormat, bytes: &[u8], n: usize| {
            let mut out = vec![0.0; n];
            dequantize(format, bytes, &mut out).unwrap();
            out
        };
        match act {
            Activations::F32(v) => v.clone(),
            Activations::F16(v) => v.iter().map(|h| h.to_f32()).collect(),
            Activations::BF16(v) => v.iter().map(|&b| crate::quant::bf16_to_f32(b)).collect(),
            Activations::Q8_0(b) => dequantized(QuantFormat::Q8_0, bytemuck::cast_slice(b), b.len() * 32),
            Activations::Q8_1(b) => {
                b.iter().flat_map(|b| b.qs.map(|q| q as f32 * f16::from_le_bytes(b.d).to_f32())).collect()
            }
            Activations::Q8_K(b) => dequantized(QuantFormat::Q8_K, bytemuck::cast_slice(b), b.len() * 256),
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
            let xd = seen(&act);
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

        /// Uniform in [lo, hi).
        fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
            lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
        }

        /// A block scale as f16 bytes as quantisers make them: magnitude log-uniform in
        /// [1e-3, 1e-1), negative half the time if `signed`.
        fn sane_scale(&mut self, signed: bool) -> [u8; 2] {
            let v = 10f32.powf(self.uniform(-3.0, -1.0));
            let negative = signed && self.next() & 1 == 1;
            f16::from_f32(if negative { -v } else { v }).to_le_bytes()
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
                // The formats below get scales in a sane range (their kernels are checked
                // against f64 references, which arbitrary f16 scales would take to inf).
                QuantFormat::Q5_0 => out.extend(bytemuck::bytes_of(&BlockQ5_0 {
                    d: rng.sane_scale(true),
                    qh: rng.bytes(),
                    qs: rng.bytes(),
                })),
                QuantFormat::Q5_1 => out.extend(bytemuck::bytes_of(&BlockQ5_1 {
                    d: rng.sane_scale(true),
                    m: rng.sane_scale(true),
                    qh: rng.bytes(),
                    qs: rng.bytes(),
                })),
                QuantFormat::Q4_K => out.extend(bytemuck::bytes_of(&BlockQ4K {
                    d: rng.sane_scale(false),
                    dmin: rng.sane_scale(false),
                    scales: rng.bytes(),
                    qs: rng.bytes(),
                })),
                QuantFormat::Q5_K => out.extend(bytemuck::bytes_of(&BlockQ5K {
                    d: rng.sane_scale(false),
                    dmin: rng.sane_scale(false),
                    scales: rng.bytes(),
                    qh: rng.bytes(),
                    qs: rng.bytes(),
                })),
                QuantFormat::Q6_K => out.extend(bytemuck::bytes_of(&BlockQ6K {
                    ql: rng.bytes(),
                    qh: rng.bytes(),
                    scales: rng.bytes::<16>().map(|b| b as i8),
                    d: rng.sane_scale(false),
                })),
                QuantFormat::BF16 => out.extend(crate::quant::f32_to_bf16(rng.uniform(-1.0, 1.0)).to_le_bytes()),
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
        // Row counts with and without a partial group or pair of groups of SIMD rows; several
        // vectors (prefill), a whole tile of tokens and some left over. Every kernel level this
        // CPU has runs, not only the best.
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for format in [QuantFormat::Q4_0, QuantFormat::Q4_1, QuantFormat::Q8_0] {
            for (rows, blocks) in [(8, 1), (29, 7), (64, 18), (5, 3), (40, 2)] {
                let cols = blocks * 32;
                let w = random_weights(format, rows * blocks, &mut rng);
                let xs: Vec<Activations> = (0..6).map(|_| random_activations(format, blocks, &mut rng)).collect();
                let mut interleaved = w.clone();
                crate::cpu::interleave::interleave_rows_always(format, &mut interleaved, rows, cols).unwrap();
                let row_bytes = w.len() / rows;
                // The portable loop over interleaved rows, as a CPU without the SIMD kernels runs it.
                let mut portable = vec![0.0; rows * xs.len()];
                let rows_of = RowsOf { format, layout: RowLayout::Interleaved, row_bytes };
                rows_portable_any(rows_of, &interleaved, &xs, &mut portable).unwrap();
                let portable: Vec<f32> =
                    (0..rows * xs.len()).map(|i| portable[i % rows * xs.len() + i / rows]).collect();
                let mut runs = vec![("interleaved, portable".to_string(), portable)];
                for level in SimdLevel::available() {
                    for (layout, data) in [(RowLayout::Plain, &w), (RowLayout::Interleaved, &interleaved)] {
                        let mut by_row = vec![0.0; rows * xs.len()];
                        for (out, w_block) in
                            by_row.chunks_mut(ROWS_PER_TASK * xs.len()).zip(data.chunks(ROWS_PER_TASK * row_bytes))
                        {
                            dot_rows_at(level, RowsOf { format, layout, row_bytes }, w_block, &xs, out).unwrap();
                        }
                        runs.push((format!("{level} {layout:?}"), by_vector(by_row, rows, xs.len())));
                    }
                }
                runs.push(("matmul_quant".into(), matmul_quant(format, &w, rows, cols, &xs).unwrap()));
                for (layout, got) in runs {
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
        assert!(Activations::for_weights(QuantFormat::Q2_K, &[0.0; 256]).is_err());
    }

    const NEW_FORMATS: [QuantFormat; 6] = [
        QuantFormat::Q5_0,
        QuantFormat::Q5_1,
        QuantFormat::Q4_K,
        QuantFormat::Q5_K,
        QuantFormat::Q6_K,
        QuantFormat::BF16,
    ];

    fn dot64(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum()
    }

    /// Σ |a| |b|: the scale a dot product's rounding is relative to.
    fn magnitude(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(&a, &b)| f64::from(a).abs() * f64::from(b).abs()).sum()
    }

    #[test]
    fn new_formats_match_dequantized_reference() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        // Five rows (no whole SIMD group), two 256-value super-blocks, two vectors (prefill).
        let (rows, cols) = (5, 512);
        for format in NEW_FORMATS {
            let w = random_weights(format, rows * cols / format.block_size(), &mut rng);
            let mut wd = vec![0.0f32; rows * cols];
            dequantize(format, &w, &mut wd).unwrap();
            let xs: Vec<Vec<f32>> = (0..2).map(|_| (0..cols).map(|_| rng.uniform(-3.0, 3.0)).collect()).collect();
            let acts: Vec<Activations> = xs.iter().map(|x| Activations::for_weights(format, x).unwrap()).collect();
            let got = matmul_quant(format, &w, rows, cols, &acts).unwrap();
            for (t, (x, act)) in xs.iter().zip(&acts).enumerate() {
                let one = matvec_quant(format, &w, rows, cols, act).unwrap();
                assert_eq!(one, got[t * rows..(t + 1) * rows], "{format} vector {t}: matvec is matmul's column");
                let xq = seen(act);
                for (r, wr) in wd.chunks_exact(cols).enumerate() {
                    let g = f64::from(got[t * rows + r]);
                    // Against the activations as the kernel sees them: f32 rounding only (some
                    // 1e-8 of the scale), but for Q5_1 the f16 block sums s that carry m (2^-11).
                    let (want, scale) = (dot64(wr, &xq), magnitude(wr, &xq));
                    let tol = if format == QuantFormat::Q5_1 { 1e-3 } else { 1e-5 };
                    let at = format!("{format} vector {t} row {r}");
                    assert!((g - want).abs() <= tol * scale, "{at}: {g} vs {want} (scale {scale})");
                    // Against the f32 activations: their quantisation error too (BF16 8 bits, Q8
                    // ±127 per block; some 6e-4 of the scale here).
                    let (exact, scale) = (dot64(wr, x), magnitude(wr, x));
                    assert!((g - exact).abs() <= 5e-3 * scale, "{at}: {g} vs exact {exact} (scale {scale})");
                }
            }
        }
    }

    /// llama.cpp's `_generic` dot products transcribed statement by statement (its `aux8`,
    /// `aux16`, `aux32`, `utmp` and masks), to hold the vectorisable kernels to its float steps.
    fn llama_cpp_generic(format: QuantFormat, row: &[u8], act: &Activations) -> f32 {
        let h = |b: [u8; 2]| f16::from_le_bytes(b).to_f32();
        match (format, act) {
            (QuantFormat::Q5_0, Activations::Q8_0(y)) => {
                let mut sumf = 0.0f32;
                for (x, y) in blocks::<BlockQ5_0>(row).unwrap().iter().zip(y) {
                    let qh = u32::from_le_bytes(x.qh);
                    let (mut sumi0, mut sumi1) = (0i32, 0i32);
                    for j in 0..16 {
                        let xh_0 = (((qh & (1 << j)) >> j) << 4) as u8;
                        let xh_1 = ((qh & (1 << (j + 16))) >> (j + 12)) as u8;
                        let x0 = (((x.qs[j] & 0x0f) | xh_0) as i32 - 16) as i8 as i32;
                        let x1 = (((x.qs[j] >> 4) | xh_1) as i32 - 16) as i8 as i32;
                        sumi0 += x0 * y.qs[j] as i32;
                        sumi1 += x1 * y.qs[j + 16] as i32;
                    }
                    let sumi = sumi0 + sumi1;
                    sumf += (h(x.d) * h(y.d)) * sumi as f32;
                }
                sumf
            }
            (QuantFormat::Q5_1, Activations::Q8_1(y)) => {
                let mut sumf = 0.0f32;
                for (x, y) in blocks::<BlockQ5_1>(row).unwrap().iter().zip(y) {
                    let qh = u32::from_le_bytes(x.qh);
                    let (mut sumi0, mut sumi1) = (0i32, 0i32);
                    for j in 0..16 {
                        let xh_0 = ((qh >> j) << 4) as u8 & 0x10;
                        let xh_1 = (qh >> (j + 12)) as u8 & 0x10;
                        let x0 = ((x.qs[j] & 0xf) | xh_0) as i32;
                        let x1 = ((x.qs[j] >> 4) | xh_1) as i32;
                        sumi0 += x0 * y.qs[j] as i32;
                        sumi1 += x1 * y.qs[j + 16] as i32;
                    }
                    let sumi = sumi0 + sumi1;
                    sumf += (h(x.d) * h(y.d)) * sumi as f32 + h(x.m) * h(y.s);
                }
                sumf
            }
            (QuantFormat::Q4_K | QuantFormat::Q5_K | QuantFormat::Q6_K, Activations::Q8_K(y)) => {
                let mut sums = [0.0f32; 8];
                let mut sumf = 0.0f32;
                let nb = y.len();
                for (i, y) in y.iter().enumerate() {
                    let block = &row[i * row.len() / nb..(i + 1) * row.len() / nb];
                    let mut aux8 = [0i8; 256];
                    let mut aux32 = [0i32; 8];
                    // (d, dmin, per-16-value scale, Σ bsums · mins) after filling aux8.
                    let (d, dmin, scale16, sumi): (f32, f32, [i32; 16], i32) = if format == QuantFormat::Q6_K {
                        let x = bytemuck::from_bytes::<BlockQ6K>(block);
                        let (mut a, mut q4, mut qh) = (0, 0, 0);
                        for _ in 0..2 {
                            for l in 0..32 {
                                let (ql, qhl) = (&x.ql[q4..], x.qh[qh + l]);
                                aux8[a + l] = ((ql[l] & 0xf) | ((qhl & 3) << 4)) as i8 - 32;
                                aux8[a + l + 32] = ((ql[l + 32] & 0xf) | (((qhl >> 2) & 3) << 4)) as i8 - 32;
                                aux8[a + l + 64] = ((ql[l] >> 4) | (((qhl >> 4) & 3) << 4)) as i8 - 32;
                                aux8[a + l + 96] = ((ql[l + 32] >> 4) | (((qhl >> 6) & 3) << 4)) as i8 - 32;
                            }
                            a += 128;
                            q4 += 64;
                            qh += 32;
                        }
                        (h(x.d), 0.0, x.scales.map(i32::from), 0)
                    } else {
                        let (d, dmin, scales, qs, hm) = if format == QuantFormat::Q4_K {
                            let x = bytemuck::from_bytes::<BlockQ4K>(block);
                            (x.d, x.dmin, x.scales, x.qs, None)
                        } else {
                            let x = bytemuck::from_bytes::<BlockQ5K>(block);
                            (x.d, x.dmin, x.scales, x.qs, Some(x.qh))
                        };
                        let (mut a, mut q4, mut m) = (0, 0, 1u8);
                        for _ in 0..4 {
                            for l in 0..32 {
                                aux8[a + l] = (qs[q4 + l] & 0xf) as i8;
                            }
                            if let Some(hm) = hm {
                                for l in 0..32 {
                                    aux8[a + l] += if hm[l] & m != 0 { 16 } else { 0 };
                                }
                            }
                            a += 32;
                            m <<= 1;
                            for l in 0..32 {
                                aux8[a + l] = (qs[q4 + l] >> 4) as i8;
                            }
                            if let Some(hm) = hm {
                                for l in 0..32 {
                                    aux8[a + l] += if hm[l] & m != 0 { 16 } else { 0 };
                                }
                            }
                            a += 32;
                            m <<= 1;
                            q4 += 32;
                        }
                        let (kmask1, kmask2, kmask3) = (0x3f3f3f3fu32, 0x0f0f0f0fu32, 0x03030303u32);
                        let mut utmp: [u32; 4] = [0; 4];
                        for (k, u) in utmp.iter_mut().take(3).enumerate() {
                            *u = u32::from_le_bytes(scales[4 * k..4 * k + 4].try_into().unwrap());
                        }
                        utmp[3] = ((utmp[2] >> 4) & kmask2) | (((utmp[1] >> 6) & kmask3) << 4);
                        let uaux = utmp[1] & kmask1;
                        utmp[1] = (utmp[2] & kmask2) | (((utmp[0] >> 6) & kmask3) << 4);
                        utmp[2] = uaux;
                        utmp[0] &= kmask1;
                        let bytes: Vec<u8> = utmp.iter().flat_map(|u| u.to_le_bytes()).collect();
                        let (sc, mins) = (&bytes[..8], &bytes[8..]);
                        let mut sumi = 0;
                        for j in 0..16 {
                            sumi += i16::from_le_bytes(y.bsums[j]) as i32 * mins[j / 2] as i32;
                        }
                        (h(d), h(dmin), std::array::from_fn(|j| sc[j / 2] as i32), sumi)
                    };
                    // Q4_K/Q5_K loop over 8 sub-blocks of 32 with four aux16 rounds each, Q6_K
                    // over 16 of 16 with two: the same 8-value rounds, each with its scale.
                    for (k, (a, q8)) in aux8.chunks_exact(8).zip(y.qs.chunks_exact(8)).enumerate() {
                        let scale = scale16[k / 2];
                        let mut aux16 = [0i16; 8];
                        for l in 0..8 {
                            aux16[l] = (q8[l] as i32 * a[l] as i32) as i16;
                        }
                        for l in 0..8 {
                            aux32[l] += scale * aux16[l] as i32;
                        }
                    }
                    let d = d * y.d();
                    for l in 0..8 {
                        sums[l] += d * aux32[l] as f32;
                    }
                    if format != QuantFormat::Q6_K {
                        let dmin = dmin * y.d();
                        sumf -= dmin * sumi as f32;
                    }
                }
                for l in 0..8 {
                    sumf += sums[l];
                }
                sumf
            }
            (QuantFormat::BF16, Activations::BF16(y)) => {
                let mut sumf = 0.0f64;
                for (x, &y) in row.chunks_exact(2).zip(y) {
                    let x = f32::from_bits((u16::from_le_bytes([x[0], x[1]]) as u32) << 16);
                    sumf += (x * f32::from_bits((y as u32) << 16)) as f64;
                }
                sumf as f32
            }
            _ => unreachable!("{format} with other activations"),
        }
    }

    #[test]
    fn new_formats_are_llama_cpp_generic_bit_for_bit() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        for format in NEW_FORMATS {
            for (rows, cols) in [(5, 256), (3, 1024), (1, 2560)] {
                let w = random_weights(format, rows * cols / format.block_size(), &mut rng);
                let xs: Vec<Activations> = (0..2)
                    .map(|t| {
                        // Spread magnitudes, and zeros: one vector all zeros in its first 256.
                        let x: Vec<f32> = (0..cols)
                            .map(|i| {
                                if t == 1 && i < 256 {
                                    0.0
                                } else {
                                    rng.uniform(-1.0, 1.0) * 10f32.powi(i as i32 % 5 - 2)
                                }
                            })
                            .collect();
                        Activations::for_weights(format, &x).unwrap()
                    })
                    .collect();
                let got = matmul_quant(format, &w, rows, cols, &xs).unwrap();
                let row_bytes = w.len() / rows;
                for (t, x) in xs.iter().enumerate() {
                    for (r, row) in w.chunks_exact(row_bytes).enumerate() {
                        let (g, want) = (got[t * rows + r], llama_cpp_generic(format, row, x));
                        assert_eq!(
                            g.to_bits(),
                            want.to_bits(),
                            "{format} {rows}x{cols} vector {t} row {r}: {g} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn new_formats_stay_plain_and_rows_dequantize() {
        let mut rng = Rng(0xdead_beef_cafe_f00d);
        let (rows, cols) = (2 * GROUP + 1, 256);
        for format in NEW_FORMATS {
            let plain = random_weights(format, rows * cols / format.block_size(), &mut rng);
            let mut data = plain.clone();
            assert_eq!(
                crate::cpu::interleave_rows(format, &mut data, rows, cols).unwrap(),
                RowLayout::Plain,
                "{format}"
            );
            assert_eq!(data, plain, "{format}: left as in the file");
            let mut all = vec![0.0; rows * cols];
            dequantize(format, &plain, &mut all).unwrap();
            for r in [0, GROUP, rows - 1] {
                let mut row = vec![0.0; cols];
                crate::cpu::dequantize_row(format, RowLayout::Plain, &data, rows, r, &mut row).unwrap();
                assert_eq!(row, all[r * cols..(r + 1) * cols], "{format} row {r}");
            }
        }
    }

    #[test]
    fn ragged_and_mismatched_k_quant_inputs_are_errors() {
        let ragged = Activations::for_weights(QuantFormat::Q4_K, &[0.5; 300]).err().expect("300 is not whole blocks");
        assert!(matches!(ragged, KernelError::RaggedValues { format: QuantFormat::Q4_K, values: 300 }), "{ragged}");
        assert!(ragged.to_string().contains("Q4_K") && ragged.to_string().contains("300"), "{ragged}");
        let act = Activations::for_weights(QuantFormat::Q4_K, &[0.5; 256]).unwrap();
        let err = matvec_quant(QuantFormat::Q4_K, &[0; 2 * 144], 2, 300, &act).unwrap_err();
        assert!(err.to_string().contains("Q4_K") && err.to_string().contains("300"), "{err}");
        assert!(matvec_quant(QuantFormat::Q6_K, &[0; 209], 1, 256, &act).is_err(), "a byte short");
        assert!(matvec_quant(QuantFormat::Q6_K, &[0; 210], 1, 512, &act).is_err(), "x too short");
        assert!(matvec_quant(QuantFormat::Q6_K, &[0; 210], 1, 256, &act).is_ok());
        // Q8_K is only ever the activations' format, and a Q8_0 vector does not fit K-quant rows.
        let err = matvec_quant(QuantFormat::Q8_K, &[0; 292], 1, 256, &act).unwrap_err();
        assert!(matches!(err, KernelError::UnsupportedFormat(QuantFormat::Q8_K)), "{err}");
        assert!(!QuantFormat::Q8_K.is_supported());
        let q8_0 = Activations::for_weights(QuantFormat::Q5_0, &[0.5; 256]).unwrap();
        assert!(matvec_quant(QuantFormat::Q4_K, &[0; 144], 1, 256, &q8_0).is_err());
        assert!(Activations::for_weights(QuantFormat::Q5_1, &[0.5; 48]).is_err());
    }
}
