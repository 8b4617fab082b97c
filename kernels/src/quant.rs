//! GGUF / ggml tensor formats: the one table of block sizes, the block layouts, and the
//! reference dequantisation and activation quantisation (llama.cpp's `*_ref` functions).
//!
//! A quantised row of `n` values is `n / block_size` blocks stored back to back. Block fields
//! are little-endian byte arrays, so every block struct has alignment 1 and any byte slice of
//! the right length casts to a block slice, wherever it sits in the model file.

use bytemuck::{Pod, Zeroable};
use half::f16;

use crate::KernelError;

/// Every ggml tensor type a GGUF file may name. Only some are implemented
/// ([`QuantFormat::is_supported`]); the rest are listed so errors can name them.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantFormat {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
}

/// (format, ggml type id, values per block, bytes per block, implemented here):
/// the single source of truth, as ggml's `type_traits` table (ggml/src/ggml.c).
const FORMATS: [(QuantFormat, u32, usize, usize, bool); 32] = {
    use QuantFormat::*;
    [
        (F32, 0, 1, 4, true),
        (F16, 1, 1, 2, true),
        (Q4_0, 2, 32, 18, true),
        (Q4_1, 3, 32, 20, true),
        (Q5_0, 6, 32, 22, true),
        (Q5_1, 7, 32, 24, true),
        (Q8_0, 8, 32, 34, true),
        (Q8_1, 9, 32, 36, false),
        (Q2_K, 10, 256, 84, false),
        (Q3_K, 11, 256, 110, false),
        (Q4_K, 12, 256, 144, true),
        (Q5_K, 13, 256, 176, true),
        (Q6_K, 14, 256, 210, true),
        (Q8_K, 15, 256, 292, false),
        (IQ2_XXS, 16, 256, 66, false),
        (IQ2_XS, 17, 256, 74, false),
        (IQ3_XXS, 18, 256, 98, false),
        (IQ1_S, 19, 256, 50, false),
        (IQ4_NL, 20, 32, 18, false),
        (IQ3_S, 21, 256, 110, false),
        (IQ2_S, 22, 256, 82, false),
        (IQ4_XS, 23, 256, 136, false),
        (I8, 24, 1, 1, false),
        (I16, 25, 1, 2, false),
        (I32, 26, 1, 4, false),
        (I64, 27, 1, 8, false),
        (F64, 28, 1, 8, false),
        (IQ1_M, 29, 256, 56, false),
        (BF16, 30, 1, 2, true),
        (TQ1_0, 34, 256, 54, false),
        (TQ2_0, 35, 256, 66, false),
        (MXFP4, 39, 32, 17, false),
    ]
};

impl QuantFormat {
    fn entry(self) -> (QuantFormat, u32, usize, usize, bool) {
        // The table holds every variant, so the search always succeeds.
        FORMATS.iter().copied().find(|e| e.0 == self).unwrap_or((self, u32::MAX, 1, 0, false))
    }

    /// The format for a ggml type id, or `None` for an id ggml does not define.
    pub fn from_ggml_type(id: u32) -> Option<Self> {
        FORMATS.iter().find(|e| e.1 == id).map(|e| e.0)
    }

    pub fn ggml_type(self) -> u32 {
        self.entry().1
    }

    /// Values per block.
    pub fn block_size(self) -> usize {
        self.entry().2
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        self.entry().3
    }

    /// Whether Hearth can compute with weights of this format. (Q8_1 and Q8_K are only the
    /// activation side of other formats' dot products here, so they are not.)
    pub fn is_supported(self) -> bool {
        self.entry().4
    }

    /// Bytes taken by `n` values, or `None` when `n` is not a whole number of blocks or the
    /// size overflows.
    pub fn bytes_for(self, n: u64) -> Option<u64> {
        let block = self.block_size() as u64;
        if !n.is_multiple_of(block) {
            return None;
        }
        (n / block).checked_mul(self.block_bytes() as u64)
    }

    /// The ggml name, as llama.cpp prints it ("Q4_1", "F16", ...).
    pub fn name(self) -> String {
        format!("{self:?}")
    }

    /// Format the activations are quantised to for this weight format's dot product, as
    /// llama.cpp's `vec_dot_type`.
    pub fn vec_dot_format(self) -> QuantFormat {
        match self {
            Self::Q4_0 | Self::Q5_0 | Self::Q8_0 => Self::Q8_0,
            Self::Q4_1 | Self::Q5_1 => Self::Q8_1,
            Self::Q4_K | Self::Q5_K | Self::Q6_K => Self::Q8_K,
            other => other,
        }
    }
}

impl std::fmt::Display for QuantFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

/// An f16 (little-endian bytes, as GGUF stores scales) as f32: exact, as every f16 is an f32.
pub fn half(bits: [u8; 2]) -> f32 {
    f16::from_le_bytes(bits).to_f32()
}

/// `v` rounded to f16 (ties to even), as little-endian bytes.
pub fn half_bits(v: f32) -> [u8; 2] {
    f16::from_f32(v).to_le_bytes()
}

/// 32 values: `x[i] = d * (q[i] - 8)`, q in 4 bits; low nibbles hold values 0..16, high nibbles 16..32.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_0 {
    pub d: [u8; 2],
    pub qs: [u8; 16],
}

/// 32 values: `x[i] = d * q[i] + m`, q in 4 bits, nibbles as [`BlockQ4_0`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_1 {
    pub d: [u8; 2],
    pub m: [u8; 2],
    pub qs: [u8; 16],
}

/// 32 values: `x[i] = d * q[i]`, q a signed byte.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8_0 {
    pub d: [u8; 2],
    pub qs: [i8; 32],
}

/// [`BlockQ8_0`] plus `s = d * Σq`: the activation side of the Q4_1 dot product, which needs
/// the block sum to apply the weights' offset `m`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8_1 {
    pub d: [u8; 2],
    pub s: [u8; 2],
    pub qs: [i8; 32],
}

/// 32 values: `x[i] = d * (q[i] - 16)`, q in 5 bits: the low 4 as [`BlockQ4_0`]'s nibbles,
/// the fifth of value i in bit i of `qh`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_0 {
    pub d: [u8; 2],
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}

/// 32 values: `x[i] = d * q[i] + m`, q in 5 bits as [`BlockQ5_0`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_1 {
    pub d: [u8; 2],
    pub m: [u8; 2],
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}

/// 256 values in 8 sub-blocks of 32: `x = d * sc[j] * q - dmin * m[j]`, q in 4 bits, the
/// sub-blocks' 6-bit scales and mins packed in `scales` ([`scale_min_k4`]). Each 32 bytes of
/// `qs` hold two sub-blocks: low nibbles the first, high nibbles the second.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; 12],
    pub qs: [u8; 128],
}

/// [`BlockQ4K`] with a fifth bit per value in `qh`: bit 2k (low nibbles) and 2k+1 (high
/// nibbles) of byte l for the k-th 64-value group.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; 12],
    pub qh: [u8; 32],
    pub qs: [u8; 128],
}

/// 256 values in 16 sub-blocks of 16: `x = d * scales[j] * (q - 32)`, q in 6 bits: the low 4
/// in `ql`, the high 2 in `qh`, each 128-value half laid out as four 32-value quarters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ6K {
    pub ql: [u8; 128],
    pub qh: [u8; 64],
    pub scales: [i8; 16],
    pub d: [u8; 2],
}

/// 256 activations: `x[i] = d * q[i]`, `d` an f32, and `bsums[j]` the i16 sum of the q of
/// values 16j..16j+16: the activation side of the K-quant dot products, where the sums apply
/// the weights' per-sub-block mins without touching the values again.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8K {
    pub d: [u8; 4],
    pub qs: [i8; 256],
    pub bsums: [[u8; 2]; 16],
}

impl BlockQ8K {
    pub fn d(&self) -> f32 {
        f32::from_le_bytes(self.d)
    }

    /// The sums of `qs` per 16 values.
    pub fn bsums(&self) -> [i16; 16] {
        self.bsums.map(i16::from_le_bytes)
    }
}

const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);
const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);
const _: () = assert!(std::mem::size_of::<BlockQ8_1>() == 36);
const _: () = assert!(std::mem::size_of::<BlockQ8K>() == 292);

/// Views `bytes` as blocks; the length must be a whole number of blocks.
pub fn blocks<B: Pod>(bytes: &[u8]) -> Result<&[B], KernelError> {
    bytemuck::try_cast_slice(bytes)
        .map_err(|_| KernelError::RaggedBlocks { bytes: bytes.len(), block: std::mem::size_of::<B>() })
}

/// Dequantises `bytes` (values of `format`) into `out`, which says how many values there are.
pub fn dequantize(format: QuantFormat, bytes: &[u8], out: &mut [f32]) -> Result<(), KernelError> {
    let expected = format.bytes_for(out.len() as u64);
    if expected != Some(bytes.len() as u64) {
        return Err(KernelError::QuantLength { format, values: out.len(), bytes: bytes.len() });
    }
    match format {
        QuantFormat::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        QuantFormat::F16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = half([c[0], c[1]]);
            }
        }
        QuantFormat::Q4_0 => {
            for (b, o) in blocks::<BlockQ4_0>(bytes)?.iter().zip(out.chunks_exact_mut(32)) {
                let d = half(b.d);
                for (j, &q) in b.qs.iter().enumerate() {
                    o[j] = ((q & 0x0f) as i32 - 8) as f32 * d;
                    o[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
                }
            }
        }
        QuantFormat::Q4_1 => {
            for (b, o) in blocks::<BlockQ4_1>(bytes)?.iter().zip(out.chunks_exact_mut(32)) {
                let (d, m) = (half(b.d), half(b.m));
                for (j, &q) in b.qs.iter().enumerate() {
                    o[j] = (q & 0x0f) as f32 * d + m;
                    o[j + 16] = (q >> 4) as f32 * d + m;
                }
            }
        }
        QuantFormat::Q8_0 => {
            for (b, o) in blocks::<BlockQ8_0>(bytes)?.iter().zip(out.chunks_exact_mut(32)) {
                let d = half(b.d);
                for (o, &q) in o.iter_mut().zip(&b.qs) {
                    *o = q as f32 * d;
                }
            }
        }
        QuantFormat::BF16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = bf16_to_f32(u16::from_le_bytes([c[0], c[1]]));
            }
        }
        QuantFormat::Q8_K => {
            for (b, o) in blocks::<BlockQ8K>(bytes)?.iter().zip(out.chunks_exact_mut(256)) {
                let d = b.d();
                for (o, &q) in o.iter_mut().zip(&b.qs) {
                    *o = d * f32::from(q);
                }
            }
        }
        QuantFormat::Q5_0 => {
            for (b, o) in blocks::<BlockQ5_0>(bytes)?.iter().zip(out.chunks_exact_mut(32)) {
                let d = half(b.d);
                let qh = u32::from_le_bytes(b.qh);
                for (j, &q) in b.qs.iter().enumerate() {
                    let (lo, hi) = five_bit_pair(q, qh, j);
                    o[j] = (lo - 16) as f32 * d;
                    o[j + 16] = (hi - 16) as f32 * d;
                }
            }
        }
        QuantFormat::Q5_1 => {
            for (b, o) in blocks::<BlockQ5_1>(bytes)?.iter().zip(out.chunks_exact_mut(32)) {
                let (d, m) = (half(b.d), half(b.m));
                let qh = u32::from_le_bytes(b.qh);
                for (j, &q) in b.qs.iter().enumerate() {
                    let (lo, hi) = five_bit_pair(q, qh, j);
                    o[j] = lo as f32 * d + m;
                    o[j + 16] = hi as f32 * d + m;
                }
            }
        }
        QuantFormat::Q4_K => {
            for (b, o) in blocks::<BlockQ4K>(bytes)?.iter().zip(out.chunks_exact_mut(256)) {
                let (d, dmin) = (half(b.d), half(b.dmin));
                // Each 64 values: two sub-blocks sharing 32 bytes of nibbles.
                for (g, (o, q)) in o.chunks_exact_mut(64).zip(b.qs.chunks_exact(32)).enumerate() {
                    let (sc1, m1) = scale_min_k4(2 * g, &b.scales);
                    let (sc2, m2) = scale_min_k4(2 * g + 1, &b.scales);
                    let (d1, min1, d2, min2) = (d * sc1, dmin * m1, d * sc2, dmin * m2);
                    for (l, &q) in q.iter().enumerate() {
                        o[l] = d1 * f32::from(q & 0x0f) - min1;
                        o[l + 32] = d2 * f32::from(q >> 4) - min2;
                    }
                }
            }
        }
        QuantFormat::Q5_K => {
            for (b, o) in blocks::<BlockQ5K>(bytes)?.iter().zip(out.chunks_exact_mut(256)) {
                let (d, dmin) = (half(b.d), half(b.dmin));
                for (g, (o, q)) in o.chunks_exact_mut(64).zip(b.qs.chunks_exact(32)).enumerate() {
                    let (sc1, m1) = scale_min_k4(2 * g, &b.scales);
                    let (sc2, m2) = scale_min_k4(2 * g + 1, &b.scales);
                    let (d1, min1, d2, min2) = (d * sc1, dmin * m1, d * sc2, dmin * m2);
                    let (u1, u2) = (1u8 << (2 * g), 2u8 << (2 * g));
                    for (l, &q) in q.iter().enumerate() {
                        let h1 = if b.qh[l] & u1 != 0 { 16 } else { 0 };
                        let h2 = if b.qh[l] & u2 != 0 { 16 } else { 0 };
                        o[l] = d1 * f32::from((q & 0x0f) + h1) - min1;
                        o[l + 32] = d2 * f32::from((q >> 4) + h2) - min2;
                    }
                }
            }
        }
        QuantFormat::Q6_K => {
            for (b, o) in blocks::<BlockQ6K>(bytes)?.iter().zip(out.chunks_exact_mut(256)) {
                let d = half(b.d);
                for (h, o) in o.chunks_exact_mut(128).enumerate() {
                    let (ql, qh, sc) = (&b.ql[64 * h..64 * h + 64], &b.qh[32 * h..32 * h + 32], &b.scales[8 * h..]);
                    for l in 0..32 {
                        let is = l / 16;
                        let q1 = i32::from((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) - 32;
                        let q2 = i32::from((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
                        let q3 = i32::from((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                        let q4 = i32::from((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                        o[l] = d * f32::from(sc[is]) * q1 as f32;
                        o[l + 32] = d * f32::from(sc[is + 2]) * q2 as f32;
                        o[l + 64] = d * f32::from(sc[is + 4]) * q3 as f32;
                        o[l + 96] = d * f32::from(sc[is + 6]) * q4 as f32;
                    }
                }
            }
        }
        other => return Err(KernelError::UnsupportedFormat(other)),
    }
    Ok(())
}

/// The 5-bit values `j` and `j + 16` of a Q5_0/Q5_1 block: nibbles of `q`, fifth bits from `qh`.
fn five_bit_pair(q: u8, qh: u32, j: usize) -> (i32, i32) {
    let lo = i32::from(q & 0x0f) | (((qh >> j) & 1) << 4) as i32;
    let hi = i32::from(q >> 4) | (((qh >> (j + 16)) & 1) << 4) as i32;
    (lo, hi)
}

/// Scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K block, 6 bits each: sub-blocks 0..4 in
/// the low 6 bits of bytes j and j + 4; 4..8 in the nibbles of bytes j + 4 with their top two
/// bits in the top bits of bytes j − 4 and j (ggml's `get_scale_min_k4`).
pub fn scale_min_k4(j: usize, q: &[u8; 12]) -> (f32, f32) {
    let (sc, m) = if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    };
    (f32::from(sc), f32::from(m))
}

/// Scales and mins of the eight sub-blocks of a Q4_K/Q5_K block, all at once: [`scale_min_k4`]
/// as llama.cpp's dot products unpack them (`utmp` and its masks).
pub(crate) fn scales_mins_k4(q: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    const KMASK1: u32 = 0x3f3f_3f3f;
    const KMASK2: u32 = 0x0f0f_0f0f;
    const KMASK3: u32 = 0x0303_0303;
    let word = |i: usize| u32::from_le_bytes([q[4 * i], q[4 * i + 1], q[4 * i + 2], q[4 * i + 3]]);
    let (u0, u1, u2) = (word(0), word(1), word(2));
    let scales_lo = u0 & KMASK1;
    let scales_hi = (u2 & KMASK2) | (((u0 >> 6) & KMASK3) << 4);
    let mins_lo = u1 & KMASK1;
    let mins_hi = ((u2 >> 4) & KMASK2) | (((u1 >> 6) & KMASK3) << 4);
    let join = |lo: u32, hi: u32| {
        let (lo, hi) = (lo.to_le_bytes(), hi.to_le_bytes());
        [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]]
    };
    (join(scales_lo, scales_hi), join(mins_lo, mins_hi))
}

/// A bf16 value as f32: its bits are the f32's top half.
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// ggml's `GGML_FP32_TO_BF16`: round to nearest even on the top 16 bits; a NaN keeps its top
/// bits with the quiet bit set (rounding could carry it into an infinity).
pub fn f32_to_bf16(v: f32) -> u16 {
    let bits = v.to_bits();
    if bits & 0x7fff_ffff > 0x7f80_0000 {
        return ((bits >> 16) | 64) as u16;
    }
    // Not a NaN, so at most 0xff80_0000 (-inf): adding under 0x1_0000 cannot overflow.
    ((bits + (0x7fff + ((bits >> 16) & 1))) >> 16) as u16
}

/// `x` as bf16 bits ([`f32_to_bf16`]): the activations of the BF16 dot product.
pub fn quantize_bf16(x: &[f32]) -> Vec<u16> {
    x.iter().map(|&v| f32_to_bf16(v)).collect()
}

/// llama.cpp's `quantize_row_q8_K_ref`: per 256 values, `max` is the value of largest
/// magnitude (the first such), `d = max / -127` (so `max` quantises to -127, and `d` has the
/// opposite sign), `q = min(127, round(x / d))` with ties to even; all zeros give `d = 0`.
pub fn quantize_q8_k(x: &[f32]) -> Result<Vec<BlockQ8K>, KernelError> {
    if !x.len().is_multiple_of(256) {
        return Err(KernelError::RaggedValues { format: QuantFormat::Q8_K, values: x.len() });
    }
    Ok(x.chunks_exact(256).map(quantize_block_q8_k).collect())
}

fn quantize_block_q8_k(x: &[f32]) -> BlockQ8K {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        // Strictly greater: the first of equal magnitudes wins, and NaNs never do.
        if v.abs() > amax {
            (amax, max) = (v.abs(), v);
        }
    }
    let mut block = BlockQ8K::zeroed();
    if amax == 0.0 {
        return block;
    }
    // -127 rather than -128: llama.cpp's IQ2_XXS AVX kernel needs q within ±127.
    let iscale = -127.0 / max;
    for (q, &v) in block.qs.iter_mut().zip(x) {
        // ggml's `nearest_int` (the 1.5 · 2^23 trick) rounds ties to even; |iscale · v| <= 127
        // give or take a rounding, and a NaN casts to 0 as it does there.
        *q = ((iscale * v).round_ties_even() as i32).clamp(-128, 127) as i8;
    }
    for (sum, qs) in block.bsums.iter_mut().zip(block.qs.chunks_exact(16)) {
        *sum = (qs.iter().map(|&q| i16::from(q)).sum::<i16>()).to_le_bytes();
    }
    block.d = (1.0 / iscale).to_le_bytes();
    block
}

/// llama.cpp's `quantize_row_q8_0_ref`: per block, `d = max|x| / 127`, `q = round(x / d)`.
pub fn quantize_q8_0(x: &[f32]) -> Result<Vec<BlockQ8_0>, KernelError> {
    quantize_q8_0_by(x, quantize_block_q8)
}

/// llama.cpp's `quantize_row_q8_1_ref`: [`quantize_q8_0`] plus `s = d * Σq`.
pub fn quantize_q8_1(x: &[f32]) -> Result<Vec<BlockQ8_1>, KernelError> {
    quantize_q8_1_by(x, quantize_block_q8)
}

/// [`quantize_q8_0`] with each block's `(d, q, Σq)` from `block`, which must give the
/// reference's bits (the CPU backend passes a vectorised one).
pub(crate) fn quantize_q8_0_by(
    x: &[f32],
    block: impl Fn(&[f32; 32]) -> (f32, [i8; 32], i32),
) -> Result<Vec<BlockQ8_0>, KernelError> {
    quantize_blocks(x, block, |d, qs, _| BlockQ8_0 { d: half_bits(d), qs })
}

/// [`quantize_q8_1`] with each block's `(d, q, Σq)` from `block`, as [`quantize_q8_0_by`].
pub(crate) fn quantize_q8_1_by(
    x: &[f32],
    block: impl Fn(&[f32; 32]) -> (f32, [i8; 32], i32),
) -> Result<Vec<BlockQ8_1>, KernelError> {
    quantize_blocks(x, block, |d, qs, sum| BlockQ8_1 { d: half_bits(d), s: half_bits(sum as f32 * d), qs })
}

/// Quantises each 32-value block of `x` with `quantize` and packs it with `pack`.
fn quantize_blocks<B>(
    x: &[f32],
    quantize: impl Fn(&[f32; 32]) -> (f32, [i8; 32], i32),
    pack: fn(f32, [i8; 32], i32) -> B,
) -> Result<Vec<B>, KernelError> {
    if !x.len().is_multiple_of(32) {
        return Err(KernelError::RaggedBlocks { bytes: x.len(), block: 32 });
    }
    Ok(x.as_chunks::<32>()
        .0
        .iter()
        .map(|chunk| {
            let (d, qs, sum) = quantize(chunk);
            pack(d, qs, sum)
        })
        .collect())
}

/// One block of [`quantize_q8_0`]: `(d, q, Σq)`.
pub(crate) fn quantize_block_q8(chunk: &[f32; 32]) -> (f32, [i8; 32], i32) {
    // As llama.cpp's portable reference (`quantize_row_q8_0_ref`): scale by 1/d and round half
    // away from zero. Its SIMD variants (127 / max|x|, ties to even) differ per CPU; the
    // reference is the one llama.cpp gives the same answer with everywhere.
    let amax = chunk.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut qs = [0i8; 32];
    for (q, &v) in qs.iter_mut().zip(chunk) {
        *q = (v * id).round() as i8;
    }
    (d, qs, qs.iter().map(|&q| i32::from(q)).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_ggml_ids_and_sizes() {
        assert_eq!(QuantFormat::from_ggml_type(3), Some(QuantFormat::Q4_1));
        assert_eq!(QuantFormat::from_ggml_type(14), Some(QuantFormat::Q6_K));
        assert_eq!(QuantFormat::from_ggml_type(4), None, "ids 4 and 5 were removed from ggml");
        assert_eq!(QuantFormat::from_ggml_type(9999), None);
        for (format, id, block, bytes, _) in FORMATS {
            assert_eq!(QuantFormat::from_ggml_type(id), Some(format));
            assert_eq!((format.ggml_type(), format.block_size(), format.block_bytes()), (id, block, bytes));
        }
        assert_eq!(QuantFormat::Q4_1.bytes_for(64), Some(40));
        assert_eq!(QuantFormat::Q4_1.bytes_for(33), None);
        assert_eq!(QuantFormat::F32.bytes_for(u64::MAX), None, "overflow is None, not a wrap");
        assert_eq!(QuantFormat::Q4_K.name(), "Q4_K");
    }

    #[test]
    fn dequantizes_hand_made_blocks() {
        // Q4_0: d = 0.5, nibbles (lo, hi) = (0, 15) → values (-8, 7) * 0.5.
        let block = BlockQ4_0 { d: half_bits(0.5), qs: [0xf0; 16] };
        let mut out = [0.0; 32];
        dequantize(QuantFormat::Q4_0, bytemuck::bytes_of(&block), &mut out).unwrap();
        assert_eq!(&out[..16], &[-4.0; 16]);
        assert_eq!(&out[16..], &[3.5; 16]);

        // Q4_1: d = 2, m = -1, nibbles (3, 1) → (5, 1).
        let block = BlockQ4_1 { d: half_bits(2.0), m: half_bits(-1.0), qs: [0x13; 16] };
        dequantize(QuantFormat::Q4_1, bytemuck::bytes_of(&block), &mut out).unwrap();
        assert_eq!((&out[..16], &out[16..]), (&[5.0; 16][..], &[1.0; 16][..]));

        // Q8_0: d = 0.25, q = i - 16.
        let mut qs = [0i8; 32];
        qs.iter_mut().enumerate().for_each(|(i, q)| *q = i as i8 - 16);
        let block = BlockQ8_0 { d: half_bits(0.25), qs };
        dequantize(QuantFormat::Q8_0, bytemuck::bytes_of(&block), &mut out).unwrap();
        assert!(out.iter().enumerate().all(|(i, &v)| v == (i as f32 - 16.0) * 0.25));

        // F16 and F32.
        let mut two = [0.0; 2];
        dequantize(QuantFormat::F16, &[half_bits(1.5), half_bits(-2.0)].concat(), &mut two).unwrap();
        assert_eq!(two, [1.5, -2.0]);
        dequantize(QuantFormat::F32, &[1.25f32.to_le_bytes(), 7.0f32.to_le_bytes()].concat(), &mut two).unwrap();
        assert_eq!(two, [1.25, 7.0]);
    }

    /// Every format against llama.cpp's gguf-py on seeded random blocks
    /// (tests/golden/quants/dequantize.json, made by scripts/make-quant-goldens.sh).
    #[test]
    fn dequantizes_as_llama_cpp_does() {
        let golden: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/golden/quants/dequantize.json")).expect("golden JSON");
        let cases = golden["cases"].as_object().expect("cases");
        assert_eq!(cases.len(), 6, "Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, BF16");
        for (name, case) in cases {
            let format = FORMATS.iter().map(|e| e.0).find(|f| f.name() == *name).expect("a known format");
            let hex = case["bytes"].as_str().expect("bytes");
            let bytes: Vec<u8> =
                (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect();
            let expected: Vec<f32> = case["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|v| v.as_f64().expect("a number") as f32)
                .collect();
            let mut out = vec![0.0; expected.len()];
            dequantize(format, &bytes, &mut out).unwrap_or_else(|e| panic!("{name}: {e}"));
            for (i, (a, b)) in out.iter().zip(&expected).enumerate() {
                // numpy may multiply in another order: a rounding step apart at most.
                assert!((a - b).abs() <= 1e-6 * b.abs().max(1e-3), "{name} value {i}: ours {a}, llama.cpp {b}");
            }
        }
    }

    #[test]
    fn wrong_lengths_and_unsupported_formats_are_errors() {
        let mut out = [0.0; 32];
        let err = dequantize(QuantFormat::Q4_0, &[0; 17], &mut out).unwrap_err();
        assert!(err.to_string().contains("Q4_0"), "{err}");
        let err = dequantize(QuantFormat::Q4_0, &[0; 18], &mut out[..31]).unwrap_err();
        assert!(err.to_string().contains("31 values"), "{err}");
        let err = dequantize(QuantFormat::Q3_K, &[0; 110], &mut [0.0; 256]).unwrap_err();
        assert!(err.to_string().contains("Q3_K"), "{err}");
        assert!(quantize_q8_0(&[0.0; 33]).is_err());
    }

    #[test]
    fn q8_quantization_round_trips_within_half_a_step() {
        let x: Vec<f32> = (0..96).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
        let q = quantize_q8_0(&x).unwrap();
        let mut back = vec![0.0; 96];
        dequantize(QuantFormat::Q8_0, bytemuck::cast_slice(&q), &mut back).unwrap();
        for (block, (xs, bs)) in x.chunks(32).zip(back.chunks(32)).enumerate() {
            let step = half(q[block].d);
            for (a, b) in xs.iter().zip(bs) {
                // Half a quantisation step, plus the f16 rounding of d scaled by |q| <= 127.
                assert!((a - b).abs() <= 0.5 * step + 127.0 * step * 1e-3, "{a} vs {b}");
            }
        }
        let q1 = quantize_q8_1(&x).unwrap();
        for (b0, b1) in q.iter().zip(&q1) {
            assert_eq!((b0.d, b0.qs), (b1.d, b1.qs));
            let sum: i32 = b1.qs.iter().map(|&v| v as i32).sum();
            assert!((half(b1.s) - sum as f32 * half(b1.d)).abs() <= 1e-2 * half(b1.s).abs().max(1.0));
        }
        assert!(quantize_q8_0(&[0.0; 32]).unwrap()[0].qs.iter().all(|&q| q == 0), "zeros stay zeros");
    }

    #[test]
    fn q8_k_quantization_follows_llama_cpp() {
        // All zeros (of either sign): d = 0, every q and sum 0.
        let mut x = [0.0f32; 512];
        x[300] = -0.0;
        for b in quantize_q8_k(&x).unwrap() {
            assert_eq!((b.d().to_bits(), b.qs, b.bsums()), (0, [0; 256], [0; 16]));
        }

        // One nonzero: it takes -127, so d = x / -127 is negative for a positive x.
        let mut x = [0.0f32; 256];
        x[37] = 0.75;
        let b = quantize_q8_k(&x).unwrap()[0];
        assert_eq!(b.qs[37], -127);
        assert!(b.qs.iter().enumerate().all(|(i, &q)| q == 0 || i == 37));
        assert_eq!(b.d(), 1.0 / (-127.0f32 / 0.75));
        assert!(b.d() < 0.0);
        let mut sums = [0i16; 16];
        sums[2] = -127;
        assert_eq!(b.bsums(), sums);

        // Equal magnitudes: the first is `max`, so -2 takes -127 and 2 takes 127 (d > 0).
        let mut x = [0.0f32; 256];
        (x[3], x[10]) = (-2.0, 2.0);
        let b = quantize_q8_k(&x).unwrap()[0];
        assert_eq!((b.qs[3], b.qs[10]), (-127, 127));
        assert_eq!(b.d(), 2.0 / 127.0);

        // max = 127 makes iscale = -1, so q = -x rounded half to even (ggml's `nearest_int`).
        let mut x = [0.0f32; 256];
        x[..7].copy_from_slice(&[127.0, 2.5, 3.5, -0.5, 1.5, -126.5, 0.4999]);
        let b = quantize_q8_k(&x).unwrap()[0];
        assert_eq!(b.qs[..7], [-127, -2, -4, 0, -2, 126, 0]);

        // Random blocks over many scales: sums, bounds, the max element, and the round trip.
        let mut seed = 0x5eed_0f08_0b10_c4c4u64;
        let mut x = Vec::new();
        for scale in [1e-20f32, 1e-3, 1.0, 3.3, 1e5, 1e20] {
            for _ in 0..256 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                x.push(((seed % 200_001) as f32 - 100_000.0) / 100_000.0 * scale);
            }
        }
        let q = quantize_q8_k(&x).unwrap();
        let mut back = vec![0.0; x.len()];
        dequantize(QuantFormat::Q8_K, bytemuck::cast_slice(&q), &mut back).unwrap();
        for (i, (b, xs)) in q.iter().zip(x.chunks_exact(256)).enumerate() {
            for (j, (&sum, qs)) in b.bsums().iter().zip(b.qs.chunks_exact(16)).enumerate() {
                assert_eq!(i32::from(sum), qs.iter().map(|&q| i32::from(q)).sum::<i32>(), "block {i} sum {j}");
            }
            assert!(b.qs.iter().all(|&q| q >= -127), "block {i}: within ±127 (i8 stops at 127)");
            let at = (0..256).fold(0, |m, j| if xs[j].abs() > xs[m].abs() { j } else { m });
            assert_eq!(b.qs[at], -127, "block {i}: the largest value");
            assert_eq!(b.d().is_sign_negative(), xs[at] > 0.0, "block {i}: d against the largest value's sign");
            let step = b.d().abs();
            for (j, (&v, &r)) in xs.iter().zip(&back[256 * i..]).enumerate() {
                // Half a step, plus the f32 roundings of iscale · v and d · q (127 ε steps each).
                assert!((v - r).abs() <= (0.5 + 1e-4) * step, "block {i} value {j}: {v} vs {r}");
            }
        }
        let err = quantize_q8_k(&[1.0; 300]).unwrap_err();
        assert!(err.to_string().contains("300") && err.to_string().contains("Q8_K"), "{err}");
    }

    #[test]
    fn bf16_rounds_as_ggml() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        assert_eq!(f32_to_bf16(-0.0), 0x8000);
        // Exactly half way rounds to even; either side of it to nearest.
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert_eq!(f32_to_bf16(f32::from_bits(0xbf80_7fff)), 0xbf80);
        // Rounding carries into infinity as ggml's does; a NaN stays one, quiet, even where
        // its payload is all in the bits dropped.
        assert_eq!(f32_to_bf16(f32::MAX), 0x7f80);
        assert_eq!(f32_to_bf16(f32::NEG_INFINITY), 0xff80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x7f80_0001)), 0x7fc0);
        assert_eq!(f32_to_bf16(f32::from_bits(0xffc1_2345)), 0xffc1);
        // The half crate rounds the same way (its NaN handling too).
        let mut seed = 0x0bf1_6bf1_6bf1_6bf1u64;
        for _ in 0..100_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let v = f32::from_bits(seed as u32);
            assert_eq!(f32_to_bf16(v), half::bf16::from_f32(v).to_bits(), "{:#010x}", seed as u32);
            let b = f32_to_bf16(v);
            assert_eq!(f32_to_bf16(bf16_to_f32(b)), b, "bf16 values convert exactly");
        }
        assert_eq!(quantize_bf16(&[1.0, -2.0]), [0x3f80, 0xc000]);
    }

    #[test]
    fn k_scales_unpack_as_one_at_a_time() {
        let mut seed = 0x6b34_5c7a_u64;
        for _ in 0..1000 {
            let q: [u8; 12] = std::array::from_fn(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            });
            let (scales, mins) = scales_mins_k4(&q);
            for j in 0..8 {
                assert_eq!((f32::from(scales[j]), f32::from(mins[j])), scale_min_k4(j, &q), "{q:?} sub-block {j}");
            }
        }
    }
}
