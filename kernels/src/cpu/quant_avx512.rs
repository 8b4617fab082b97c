//! AVX-512 VNNI row kernels for the quantised matrix products: sixteen weight rows (two
//! interleaved groups, [`super::interleave`]) against up to [`TOKENS`] activation vectors at a
//! time, one row per f32 lane, bit-identical to the portable dot products.
//!
//! The scheme is [`super::quant_avx2`]'s (why rows sit in lanes is explained there) at twice
//! the width, with two changes that are where the speed comes from:
//! - `vpdpbusd` multiplies 64 unsigned weight bytes by 64 signed activation bytes and adds
//!   each four into an i32 lane in one instruction, where AVX2 needs `vpmaddubsw`, an i16 add
//!   and a `vpmaddwd`;
//! - prefill tiles tokens: each block's weights are loaded and unpacked once and then dotted
//!   with [`TOKENS`] activation vectors, each with its own accumulator (a register tile of 16
//!   rows × 4 tokens), so the unpacking, not only the memory traffic, is shared.
//!
//! Each row's float steps stay the reference's chain, per token: the same IEEE multiplies and
//! adds in block order, never fused.
//!
//! Every function here needs AVX-512 F, BW, VL and VNNI (and F16C); callers check with
//! [`super::SimdLevel`].

use std::arch::x86_64::*;

use super::interleave::GROUP;
use super::quant_avx2::prefetch;
use super::quant_matvec::half;
use crate::quant::{BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockQ8_1};

/// Rows a kernel here takes at once: two interleaved groups, one row per f32 lane.
pub(super) const ROWS: usize = 2 * GROUP;

/// Tokens a prefill tile takes at once; 4 × 16 accumulators and the unpacked weights fit in
/// the 32 vector registers.
pub(super) const TOKENS: usize = 4;

/// Sixteen f16 fields at `at` of the two groups' block pieces `a` and `b` as f32 lanes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,f16c")]
fn field(a: &[u8], b: &[u8], at: usize) -> __m512 {
    let lo = bytemuck::cast::<[u8; 16], __m128i>(a[at..][..16].try_into().unwrap());
    let hi = bytemuck::cast::<[u8; 16], __m128i>(b[at..][..16].try_into().unwrap());
    _mm512_cvtph_ps(_mm256_set_m128i(hi, lo))
}

/// The 32-byte quant vectors at `at` of the two groups' block pieces, as one register: lane
/// `r` holds four quant bytes of row `r` of the pair.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,f16c")]
fn quads(a: &[u8], b: &[u8], at: usize) -> __m512i {
    let lo = bytemuck::cast::<[u8; 32], __m256i>(a[at..][..32].try_into().unwrap());
    let hi = bytemuck::cast::<[u8; 32], __m256i>(b[at..][..32].try_into().unwrap());
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

/// Activation bytes `4j..4j + 4` in every 32-bit lane.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,f16c")]
fn broadcast4(x: &[i8; 32], j: usize) -> __m512i {
    // One 32-bit load, where four byte loads would be assembled.
    let quad: [i8; 4] = x[4 * j..4 * j + 4].try_into().expect("4 bytes");
    _mm512_set1_epi32(i32::from_le_bytes(bytemuck::cast(quad)))
}

/// Σ x over a block of activations, exact in i32.
#[inline(always)]
fn sum(x: &[i8; 32]) -> i32 {
    x.iter().map(|&q| i32::from(q)).sum()
}

/// The low and high nibbles of the four quant vectors of a Q4 block pair, as bytes 0..16.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,f16c")]
fn nibbles(a: &[u8], b: &[u8], at: usize) -> ([__m512i; 4], [__m512i; 4]) {
    let mask = _mm512_set1_epi8(0x0f);
    let q: [__m512i; 4] = std::array::from_fn(|j| quads(a, b, at + 32 * j));
    (q.map(|v| _mm512_and_si512(v, mask)), q.map(|v| _mm512_and_si512(_mm512_srli_epi16::<4>(v), mask)))
}

/// Lane `r`: Σ nibble · x over row `r`'s 32 values of one block (low nibbles with values
/// `0..16`, high with `16..32`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,f16c")]
fn nibble_sums(lo: &[__m512i; 4], hi: &[__m512i; 4], x: &[i8; 32]) -> __m512i {
    let mut acc = _mm512_setzero_si512();
    for j in 0..4 {
        acc = _mm512_dpbusd_epi32(acc, lo[j], broadcast4(x, j));
        acc = _mm512_dpbusd_epi32(acc, hi[j], broadcast4(x, j + 4));
    }
    acc
}

/// The f32 lanes of each accumulator.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,f16c")]
fn lanes<const T: usize>(acc: [__m512; T]) -> [[f32; ROWS]; T] {
    acc.map(bytemuck::cast)
}

/// The two groups of a pair (`pair` holds `blocks` group blocks of `step` bytes for each).
fn groups(pair: &[u8], blocks: usize, step: usize) -> (&[u8], &[u8]) {
    assert_eq!(pair.len(), 2 * blocks * step, "pair and x differ in length");
    pair.split_at(blocks * step)
}

/// Sixteen rows' `llama.cpp ggml_vec_dot_q4_1_q8_1` with each of `xs`: per block
/// `acc += (d_w d_x) Σ q_w q_x + m_w s_x`. `ahead` is where the next pair starts (to prefetch).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,f16c")]
pub(super) fn q4_1_q8_1<const T: usize>(pair: &[u8], xs: [&[BlockQ8_1]; T], ahead: *const u8) -> [[f32; ROWS]; T] {
    const STEP: usize = GROUP * size_of::<BlockQ4_1>();
    let blocks = xs[0].len();
    assert!(xs.iter().all(|x| x.len() == blocks), "activation vectors differ in length");
    let (ga, gb) = groups(pair, blocks, STEP);
    let mut acc = [_mm512_setzero_ps(); T];
    for (b, (a, bb)) in ga.chunks_exact(STEP).zip(gb.chunks_exact(STEP)).enumerate() {
        prefetch(ahead.wrapping_add(2 * b * STEP), 2 * STEP);
        let (lo, hi) = nibbles(a, bb, 32);
        let (d, m) = (field(a, bb, 0), field(a, bb, 16));
        for (acc, x) in acc.iter_mut().zip(xs) {
            let x = &x[b];
            let sums = nibble_sums(&lo, &hi, &x.qs);
            let dd = _mm512_mul_ps(d, _mm512_set1_ps(half(x.d)));
            let ms = _mm512_mul_ps(m, _mm512_set1_ps(half(x.s)));
            *acc = _mm512_add_ps(*acc, _mm512_add_ps(_mm512_mul_ps(dd, _mm512_cvtepi32_ps(sums)), ms));
        }
    }
    lanes(acc)
}

/// As [`q4_1_q8_1`] for `ggml_vec_dot_q4_0_q8_0`: per block `acc += (Σ (q_w - 8) q_x · d_w) · d_x`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,f16c")]
pub(super) fn q4_0_q8_0<const T: usize>(pair: &[u8], xs: [&[BlockQ8_0]; T], ahead: *const u8) -> [[f32; ROWS]; T] {
    const STEP: usize = GROUP * size_of::<BlockQ4_0>();
    let blocks = xs[0].len();
    assert!(xs.iter().all(|x| x.len() == blocks), "activation vectors differ in length");
    let (ga, gb) = groups(pair, blocks, STEP);
    let mut acc = [_mm512_setzero_ps(); T];
    for (b, (a, bb)) in ga.chunks_exact(STEP).zip(gb.chunks_exact(STEP)).enumerate() {
        prefetch(ahead.wrapping_add(2 * b * STEP), 2 * STEP);
        let (lo, hi) = nibbles(a, bb, 16);
        let d = field(a, bb, 0);
        for (acc, x) in acc.iter_mut().zip(xs) {
            let x = &x[b];
            // Σ (q - 8) x = Σ q x - 8 Σ x: the nibbles stay unsigned for `vpdpbusd`.
            let sums = _mm512_sub_epi32(nibble_sums(&lo, &hi, &x.qs), _mm512_set1_epi32(8 * sum(&x.qs)));
            let scaled = _mm512_mul_ps(_mm512_cvtepi32_ps(sums), d);
            *acc = _mm512_add_ps(*acc, _mm512_mul_ps(scaled, _mm512_set1_ps(half(x.d))));
        }
    }
    lanes(acc)
}

/// As [`q4_1_q8_1`] for `ggml_vec_dot_q8_0_q8_0`: per block `acc += Σ q_w q_x · (d_w d_x)`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,f16c")]
pub(super) fn q8_0_q8_0<const T: usize>(pair: &[u8], xs: [&[BlockQ8_0]; T], ahead: *const u8) -> [[f32; ROWS]; T] {
    const STEP: usize = GROUP * size_of::<BlockQ8_0>();
    let blocks = xs[0].len();
    assert!(xs.iter().all(|x| x.len() == blocks), "activation vectors differ in length");
    let (ga, gb) = groups(pair, blocks, STEP);
    // `vpdpbusd` wants one operand unsigned: w + 128 is, and Σ (w + 128) x = Σ w x + 128 Σ x.
    let flip = _mm512_set1_epi8(i8::MIN);
    let mut acc = [_mm512_setzero_ps(); T];
    for (b, (a, bb)) in ga.chunks_exact(STEP).zip(gb.chunks_exact(STEP)).enumerate() {
        prefetch(ahead.wrapping_add(2 * b * STEP), 2 * STEP);
        let w: [__m512i; 8] = std::array::from_fn(|j| _mm512_xor_si512(quads(a, bb, 16 + 32 * j), flip));
        let d = field(a, bb, 0);
        for (acc, x) in acc.iter_mut().zip(xs) {
            let x = &x[b];
            let mut sums = _mm512_set1_epi32(-128 * sum(&x.qs));
            for (j, &w) in w.iter().enumerate() {
                sums = _mm512_dpbusd_epi32(sums, w, broadcast4(&x.qs, j));
            }
            let dd = _mm512_mul_ps(d, _mm512_set1_ps(half(x.d)));
            *acc = _mm512_add_ps(*acc, _mm512_mul_ps(_mm512_cvtepi32_ps(sums), dd));
        }
    }
    lanes(acc)
}
