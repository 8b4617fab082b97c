//! aarch64 NEON row kernels with the dot-product extension: four weight rows (in the file's
//! layout) against one activation vector at a time, one row per f32 lane, bit-identical to the
//! portable dot products. The scheme is [`super::quant_simd128`]'s; the difference is `sdot`,
//! which multiplies 16 signed byte pairs and adds each four into an i32 lane in one
//! instruction (SIMD128 needs two widening multiplies and two pairwise adds for the same).
//! Both `sdot` operands are signed, so Q4_0's nibbles take their offset of 8 before it.
//!
//! Every function here needs NEON and `dotprod`; callers check with [`super::SimdLevel`].

use std::arch::aarch64::*;
use std::arch::asm;

use super::quant_matvec::half;
use crate::quant::{BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockQ8_1};

/// Rows a kernel here takes at once: one per f32 lane.
pub(super) const ROWS: usize = 4;

/// 16 bytes as a signed vector.
#[target_feature(enable = "neon,dotprod")]
fn load16<T: bytemuck::Pod>(bytes: &[T; 16]) -> int8x16_t {
    bytemuck::cast::<[u8; 16], int8x16_t>(bytemuck::cast(*bytes))
}

/// The two 16-byte halves of a block of activations.
#[target_feature(enable = "neon,dotprod")]
fn halves_of(x: &[i8; 32]) -> (int8x16_t, int8x16_t) {
    let (lo, hi) = x.split_first_chunk::<16>().expect("32 bytes");
    (load16(lo), load16(hi.first_chunk::<16>().expect("16 more")))
}

/// Four f16 (little-endian bytes) as f32 lanes, through the exact lookup table.
#[target_feature(enable = "neon,dotprod")]
fn halves(bits: [[u8; 2]; ROWS]) -> float32x4_t {
    bytemuck::cast(bits.map(half))
}

/// Lane `r`: the sum of the lanes of `v[r]`.
#[target_feature(enable = "neon,dotprod")]
fn sum_lanes(v: [int32x4_t; ROWS]) -> int32x4_t {
    vpaddq_s32(vpaddq_s32(v[0], v[1]), vpaddq_s32(v[2], v[3]))
}

/// Σ (nibble - offset) · x over one Q4 block (low nibbles with `x0`, high with `x1`), as four
/// i32 partial sums. Nibbles less the offset stay within i8.
#[target_feature(enable = "neon,dotprod")]
fn nibbles_dot(qs: &[u8; 16], offset: i8, x0: int8x16_t, x1: int8x16_t) -> int32x4_t {
    let v = vreinterpretq_u8_s8(load16(qs));
    let offset = vdupq_n_s8(offset);
    let lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f))), offset);
    let hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(v)), offset);
    sdot(sdot(vdupq_n_s32(0), lo, x0), hi, x1)
}

/// `acc` plus, in lane `i`, Σ a·b over bytes `4i..4i + 4`: the `sdot` instruction. Written as
/// assembly because Rust's `vdotq_s32` is not stable yet (`stdarch_neon_dotprod`).
#[target_feature(enable = "neon,dotprod")]
fn sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY: `sdot` reads two registers and updates a third, nothing else; this function's
    // target features, which its callers checked, include `dotprod`.
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

/// Block `b` of every row; every row must be longer than `b`.
#[inline(always)]
fn column<B: Copy>(rows: &[&[B]; ROWS], b: usize) -> [B; ROWS] {
    rows.map(|r| r[b])
}

/// Writes `one(x)` (four rows' values) for each vector `x` of `xs` into `out` (`[row][x]`).
#[inline(always)]
fn each_token<B>(xs: &[&[B]], out: &mut [f32], one: impl Fn(&[B]) -> [f32; ROWS]) {
    let n = xs.len();
    for (t, x) in xs.iter().enumerate() {
        for (r, v) in one(x).into_iter().enumerate() {
            out[r * n + t] = v;
        }
    }
}

/// The dot products of four rows with each vector of `xs`, into `out` (`[row][x]`), as
/// `llama.cpp ggml_vec_dot_q4_1_q8_1`: per block `acc += (d_w d_x) Σ q_w q_x + m_w s_x`. Each
/// row holds as many blocks as each vector.
#[target_feature(enable = "neon,dotprod")]
pub(super) fn q4_1_q8_1(rows: [&[BlockQ4_1]; ROWS], xs: &[&[BlockQ8_1]], out: &mut [f32]) {
    each_token(xs, out, |x| q4_1_q8_1_one(rows, x))
}

/// [`q4_1_q8_1`] with one vector.
#[target_feature(enable = "neon,dotprod")]
fn q4_1_q8_1_one(rows: [&[BlockQ4_1]; ROWS], x: &[BlockQ8_1]) -> [f32; ROWS] {
    assert!(rows.iter().all(|r| r.len() == x.len()), "rows and x differ in length");
    let mut acc = vdupq_n_f32(0.0);
    for (b, xb) in x.iter().enumerate() {
        let w = column(&rows, b);
        let (x0, x1) = halves_of(&xb.qs);
        let sums = sum_lanes(w.map(|wb| nibbles_dot(&wb.qs, 0, x0, x1)));
        let dd = vmulq_f32(halves(w.map(|wb| wb.d)), vdupq_n_f32(half(xb.d)));
        let ms = vmulq_f32(halves(w.map(|wb| wb.m)), vdupq_n_f32(half(xb.s)));
        acc = vaddq_f32(acc, vaddq_f32(vmulq_f32(dd, vcvtq_f32_s32(sums)), ms));
    }
    bytemuck::cast(acc)
}

/// As [`q4_1_q8_1`] for `ggml_vec_dot_q4_0_q8_0`: per block `acc += (Σ (q_w - 8) q_x · d_w) · d_x`.
#[target_feature(enable = "neon,dotprod")]
pub(super) fn q4_0_q8_0(rows: [&[BlockQ4_0]; ROWS], xs: &[&[BlockQ8_0]], out: &mut [f32]) {
    each_token(xs, out, |x| q4_0_q8_0_one(rows, x))
}

/// [`q4_0_q8_0`] with one vector.
#[target_feature(enable = "neon,dotprod")]
fn q4_0_q8_0_one(rows: [&[BlockQ4_0]; ROWS], x: &[BlockQ8_0]) -> [f32; ROWS] {
    assert!(rows.iter().all(|r| r.len() == x.len()), "rows and x differ in length");
    let mut acc = vdupq_n_f32(0.0);
    for (b, xb) in x.iter().enumerate() {
        let w = column(&rows, b);
        let (x0, x1) = halves_of(&xb.qs);
        let sums = sum_lanes(w.map(|wb| nibbles_dot(&wb.qs, 8, x0, x1)));
        let scaled = vmulq_f32(vcvtq_f32_s32(sums), halves(w.map(|wb| wb.d)));
        acc = vaddq_f32(acc, vmulq_f32(scaled, vdupq_n_f32(half(xb.d))));
    }
    bytemuck::cast(acc)
}

/// As [`q4_1_q8_1`] for `ggml_vec_dot_q8_0_q8_0`: per block `acc += Σ q_w q_x · (d_w d_x)`.
#[target_feature(enable = "neon,dotprod")]
pub(super) fn q8_0_q8_0(rows: [&[BlockQ8_0]; ROWS], xs: &[&[BlockQ8_0]], out: &mut [f32]) {
    each_token(xs, out, |x| q8_0_q8_0_one(rows, x))
}

/// [`q8_0_q8_0`] with one vector.
#[target_feature(enable = "neon,dotprod")]
fn q8_0_q8_0_one(rows: [&[BlockQ8_0]; ROWS], x: &[BlockQ8_0]) -> [f32; ROWS] {
    assert!(rows.iter().all(|r| r.len() == x.len()), "rows and x differ in length");
    let mut acc = vdupq_n_f32(0.0);
    for (b, xb) in x.iter().enumerate() {
        let w = column(&rows, b);
        let (x0, x1) = halves_of(&xb.qs);
        let sums = sum_lanes(w.map(|wb| {
            let (w0, w1) = halves_of(&wb.qs);
            sdot(sdot(vdupq_n_s32(0), w0, x0), w1, x1)
        }));
        let dd = vmulq_f32(halves(w.map(|wb| wb.d)), vdupq_n_f32(half(xb.d)));
        acc = vaddq_f32(acc, vmulq_f32(vcvtq_f32_s32(sums), dd));
    }
    bytemuck::cast(acc)
}
