//! wasm SIMD128 row kernels for the quantised matvec: four weight rows (in the file's layout)
//! against one activation vector at a time, one row per f32 lane, bit-identical to the
//! portable dot products. The idea is [`super::quant_avx2`]'s at half the width: lane `r`
//! adds row `r`'s block values in the reference's order with the reference's operations (wasm
//! has no fused multiply-add, and its float ops are IEEE), while each block's exact integer
//! sum is formed with widening multiplies and reduced across lanes by shuffles.
//!
//! Only built for wasm32 with `simd128` enabled; native builds never compile this file, so its
//! checks run in the wasm kernel tests (kernels/tests/web_gpu_matches_cpu.rs, in Chromium).

use core::arch::wasm32::*;

use super::quant_matvec::half;
use crate::quant::{BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockQ8_1};

/// Rows a kernel here takes at once: one per f32 lane.
pub(super) const ROWS: usize = 4;

/// 16 bytes as a vector.
#[inline(always)]
fn load16<T: bytemuck::Pod>(bytes: &[T; 16]) -> v128 {
    // SAFETY: `bytes` is 16 readable bytes (`T` is one byte: u8 or i8), and wasm loads need
    // no alignment.
    unsafe { v128_load(bytes.as_ptr().cast()) }
}

/// 32 bytes as two vectors.
#[inline(always)]
fn halves_of<T: bytemuck::Pod>(bytes: &[T; 32]) -> (v128, v128) {
    let (lo, hi) = bytes.split_first_chunk::<16>().expect("32 bytes");
    (load16(lo), load16(hi.first_chunk::<16>().expect("16 more")))
}

/// Four f16 (little-endian bytes) as f32 lanes, through the exact lookup table.
#[inline(always)]
fn halves(bits: [[u8; 2]; ROWS]) -> v128 {
    f32x4(half(bits[0]), half(bits[1]), half(bits[2]), half(bits[3]))
}

/// Reduces four i32x4 vectors to one: lane `r` is the sum of the lanes of `v[r]`.
#[inline(always)]
fn sum_lanes(v: [v128; ROWS]) -> v128 {
    // [a0 + a2, b0 + b2, a1 + a3, b1 + b3], likewise for c and d, then the halves of each.
    let ab = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(v[0], v[1]), i32x4_shuffle::<2, 6, 3, 7>(v[0], v[1]));
    let cd = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(v[2], v[3]), i32x4_shuffle::<2, 6, 3, 7>(v[2], v[3]));
    i32x4_add(i32x4_shuffle::<0, 1, 4, 5>(ab, cd), i32x4_shuffle::<2, 3, 6, 7>(ab, cd))
}

/// Σ w·x over 16 signed bytes each, as four i32 partial sums. A product is at most 128 · 127
/// (quantised activations stay within ±127), so the pairwise i16 sum cannot overflow.
#[inline(always)]
fn dot16(w: v128, x: v128) -> v128 {
    i32x4_extadd_pairwise_i16x8(i16x8_add(i16x8_extmul_low_i8x16(w, x), i16x8_extmul_high_i8x16(w, x)))
}

/// Σ (nibble - offset)·x over one Q4 block (low nibbles with `x0`, high with `x1`), as four
/// i32 partial sums. The i16 sums hold four products of at most 15 · 128 each.
#[inline(always)]
fn nibbles_dot(qs: &[u8; 16], offset: i8, x0: v128, x1: v128) -> v128 {
    let v = load16(qs);
    let lo = i8x16_sub(v128_and(v, u8x16_splat(0x0f)), i8x16_splat(offset));
    let hi = i8x16_sub(u8x16_shr(v, 4), i8x16_splat(offset));
    let p = i16x8_add(
        i16x8_add(i16x8_extmul_low_i8x16(lo, x0), i16x8_extmul_high_i8x16(lo, x0)),
        i16x8_add(i16x8_extmul_low_i8x16(hi, x1), i16x8_extmul_high_i8x16(hi, x1)),
    );
    i32x4_extadd_pairwise_i16x8(p)
}

/// Lanes as four f32.
#[inline(always)]
fn lanes(v: v128) -> [f32; ROWS] {
    [f32x4_extract_lane::<0>(v), f32x4_extract_lane::<1>(v), f32x4_extract_lane::<2>(v), f32x4_extract_lane::<3>(v)]
}

/// Block `b` of every row (each row holds the same number of blocks as `x`).
#[inline(always)]
fn column<B: Copy>(rows: &[&[B]; ROWS], b: usize) -> [B; ROWS] {
    rows.map(|r| r[b])
}

/// `ggml_vec_dot_q4_1_q8_1` for four rows: per block `acc += (d_w d_x) Σ q_w q_x + m_w s_x`.
pub(super) fn q4_1_q8_1(rows: [&[BlockQ4_1]; ROWS], x: &[BlockQ8_1]) -> [f32; ROWS] {
    let rows = rows.map(|r| &r[..x.len()]);
    let mut acc = f32x4_splat(0.0);
    for (b, xb) in x.iter().enumerate() {
        let w = column(&rows, b);
        let (x0, x1) = halves_of(&xb.qs);
        let sums = sum_lanes(w.map(|wb| nibbles_dot(&wb.qs, 0, x0, x1)));
        let dd = f32x4_mul(halves(w.map(|wb| wb.d)), f32x4_splat(half(xb.d)));
        let ms = f32x4_mul(halves(w.map(|wb| wb.m)), f32x4_splat(half(xb.s)));
        acc = f32x4_add(acc, f32x4_add(f32x4_mul(dd, f32x4_convert_i32x4(sums)), ms));
    }
    lanes(acc)
}

/// `ggml_vec_dot_q4_0_q8_0` for four rows: per block `acc += (Σ (q_w - 8) q_x · d_w) · d_x`.
pub(super) fn q4_0_q8_0(rows: [&[BlockQ4_0]; ROWS], x: &[BlockQ8_0]) -> [f32; ROWS] {
    let rows = rows.map(|r| &r[..x.len()]);
    let mut acc = f32x4_splat(0.0);
    for (b, xb) in x.iter().enumerate() {
        let w = column(&rows, b);
        let (x0, x1) = halves_of(&xb.qs);
        let sums = sum_lanes(w.map(|wb| nibbles_dot(&wb.qs, 8, x0, x1)));
        let scaled = f32x4_mul(f32x4_convert_i32x4(sums), halves(w.map(|wb| wb.d)));
        acc = f32x4_add(acc, f32x4_mul(scaled, f32x4_splat(half(xb.d))));
    }
    lanes(acc)
}

/// `ggml_vec_dot_q8_0_q8_0` for four rows: per block `acc += Σ q_w q_x · (d_w d_x)`.
pub(super) fn q8_0_q8_0(rows: [&[BlockQ8_0]; ROWS], x: &[BlockQ8_0]) -> [f32; ROWS] {
    let rows = rows.map(|r| &r[..x.len()]);
    let mut acc = f32x4_splat(0.0);
    for (b, xb) in x.iter().enumerate() {
        let w = column(&rows, b);
        let (x0, x1) = halves_of(&xb.qs);
        let sums = sum_lanes(w.map(|wb| {
            let (w0, w1) = halves_of(&wb.qs);
            i32x4_add(dot16(w0, x0), dot16(w1, x1))
        }));
        let dd = f32x4_mul(halves(w.map(|wb| wb.d)), f32x4_splat(half(xb.d)));
        acc = f32x4_add(acc, f32x4_mul(f32x4_convert_i32x4(sums), dd));
    }
    lanes(acc)
}
