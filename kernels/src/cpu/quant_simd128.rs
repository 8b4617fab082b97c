//! wasm SIMD128 row kernels for the quantised matrix products: four weight rows (in the file's
//! layout) against up to [`TOKENS`] activation vectors at a time, one row per f32 lane,
//! bit-identical to the portable dot products. The idea is [`super::quant_avx2`]'s at half the
//! width: lane `r` adds row `r`'s block values in the reference's order with the reference's
//! operations (wasm has no fused multiply-add, and its float ops are IEEE), while each block's
//! exact integer sum is formed in i32 lanes and reduced across lanes by shuffles.
//!
//! SIMD128 has no byte dot product. One token at a time (decode), each block's products are
//! widening multiplies (`i16x8.extmul_*_i8x16`) summed pairwise. A tile of [`TOKENS`] tokens
//! (prefill) instead widens both sides to i16 once and shares them: a block of activations
//! once per token for all four rows, a block of weights once per row for all the tokens; what
//! is left per row and token is four `i32x4.dot_i16x8_s` (x86's `pmaddwd`) and three adds for
//! 32 products. Measured in V8 on a 1536 × 576 Q4_1 matrix: the tile takes 0.34 ms for four
//! tokens where four single-token passes take 0.51; for one token the widening costs more
//! than it saves (0.19 against 0.13 ms), so decode keeps the multiplies.
//!
//! Only built for wasm32 with `simd128` enabled; native builds never compile this file, so its
//! checks run in the wasm kernel tests (kernels/tests/web_gpu_matches_cpu.rs, in Chromium).

use core::arch::wasm32::*;

use super::quant_matvec::half;
use crate::quant::{BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockQ8_1};

/// Rows a kernel here takes at once: one per f32 lane.
pub(super) const ROWS: usize = 4;

/// Tokens a prefill tile takes at once: each row's widened weights serve all of them.
const TOKENS: usize = 4;

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

/// The low and high nibbles of a Q4 block less `offset` (values `0..16` and `16..32`): they
/// stay within i8.
#[inline(always)]
fn nibbles(qs: &[u8; 16], offset: i8) -> (v128, v128) {
    let v = load16(qs);
    let lo = i8x16_sub(v128_and(v, u8x16_splat(0x0f)), i8x16_splat(offset));
    (lo, i8x16_sub(u8x16_shr(v, 4), i8x16_splat(offset)))
}

/// 32 signed bytes widened to four i16x8 vectors, in value order.
#[inline(always)]
fn widen(lo: v128, hi: v128) -> [v128; 4] {
    [i16x8_extend_low_i8x16(lo), i16x8_extend_high_i8x16(lo), i16x8_extend_low_i8x16(hi), i16x8_extend_high_i8x16(hi)]
}

/// Σ w·x over one widened block, as four i32 partial sums (each i16 product is at most
/// 128 · 128, so a pair cannot overflow i32).
#[inline(always)]
fn dot_widened(w: &[v128; 4], x: &[v128; 4]) -> v128 {
    i32x4_add(
        i32x4_add(i32x4_dot_i16x8(w[0], x[0]), i32x4_dot_i16x8(w[1], x[1])),
        i32x4_add(i32x4_dot_i16x8(w[2], x[2]), i32x4_dot_i16x8(w[3], x[3])),
    )
}

/// Each token's exact integer sums for one block: lane `r` is Σ w·x over row `r`'s 32 values,
/// where `w[r]` is the row's block as two vectors of 16 signed values (values `0..16`,
/// `16..32`) and `xs` are the tokens' activation blocks. Each side is widened once.
#[inline(always)]
fn tile_sums(w: [(v128, v128); ROWS], xs: [&[i8; 32]; TOKENS]) -> [v128; TOKENS] {
    let wide = w.map(|(w0, w1)| widen(w0, w1));
    xs.map(|x| {
        let (x0, x1) = halves_of(x);
        let x = widen(x0, x1);
        sum_lanes(std::array::from_fn(|r| dot_widened(&wide[r], &x)))
    })
}

/// One token's exact integer sums for one block (as [`tile_sums`]), by widening multiplies.
#[inline(always)]
fn one_sums(w: [(v128, v128); ROWS], x: &[i8; 32]) -> v128 {
    let (x0, x1) = halves_of(x);
    sum_lanes(w.map(|(w0, w1)| i32x4_add(dot16(w0, x0), dot16(w1, x1))))
}

/// [`one_sums`] for Q4 weights (values within ±15): four products of at most 15 · 128 can
/// share an i16 lane, so one pairwise widening add serves the whole block.
#[inline(always)]
fn one_sums_q4(w: [(v128, v128); ROWS], x: &[i8; 32]) -> v128 {
    let (x0, x1) = halves_of(x);
    sum_lanes(w.map(|(lo, hi)| {
        let p = i16x8_add(
            i16x8_add(i16x8_extmul_low_i8x16(lo, x0), i16x8_extmul_high_i8x16(lo, x0)),
            i16x8_add(i16x8_extmul_low_i8x16(hi, x1), i16x8_extmul_high_i8x16(hi, x1)),
        );
        i32x4_extadd_pairwise_i16x8(p)
    }))
}

/// Block `b` of every row.
#[inline(always)]
fn column<B: Copy>(rows: &[&[B]; ROWS], b: usize) -> [B; ROWS] {
    rows.map(|r| r[b])
}

/// Runs `tile` on the tokens of `xs` in tiles of [`TOKENS`] and `one` on those left over, and
/// writes each token's four row values (f32 lanes) to `out` (`[row][token]`).
#[inline(always)]
fn by_tiles<B>(
    xs: &[&[B]],
    out: &mut [f32],
    tile: impl Fn([&[B]; TOKENS]) -> [v128; TOKENS],
    one: impl Fn(&[B]) -> v128,
) {
    let n = xs.len();
    let mut write = |t0: usize, acc: &[v128]| {
        for (i, acc) in acc.iter().enumerate() {
            let v = [
                f32x4_extract_lane::<0>(*acc),
                f32x4_extract_lane::<1>(*acc),
                f32x4_extract_lane::<2>(*acc),
                f32x4_extract_lane::<3>(*acc),
            ];
            for (r, v) in v.into_iter().enumerate() {
                out[r * n + t0 + i] = v;
            }
        }
    };
    let whole = n / TOKENS * TOKENS;
    for t0 in (0..whole).step_by(TOKENS) {
        write(t0, &tile(std::array::from_fn(|i| xs[t0 + i])));
    }
    for (t0, x) in xs.iter().enumerate().skip(whole) {
        write(t0, &[one(x)]);
    }
}

/// `ggml_vec_dot_q4_1_q8_1` of four rows with each vector of `xs`, into `out` (`[row][x]`):
/// per block `acc += (d_w d_x) Σ q_w q_x + m_w s_x`.
pub(super) fn q4_1_q8_1(rows: [&[BlockQ4_1]; ROWS], xs: &[&[BlockQ8_1]], out: &mut [f32]) {
    by_tiles(xs, out, |xs| q4_1_tile(rows, xs), |x| q4_1_one(rows, x));
}

/// [`q4_1_q8_1`] for a tile of tokens: each token's accumulators.
#[inline(always)]
fn q4_1_tile(rows: [&[BlockQ4_1]; ROWS], xs: [&[BlockQ8_1]; TOKENS]) -> [v128; TOKENS] {
    let blocks = xs[0].len();
    let (rows, xs) = (rows.map(|r| &r[..blocks]), xs.map(|x| &x[..blocks]));
    let mut acc = [f32x4_splat(0.0); TOKENS];
    for b in 0..blocks {
        let w = column(&rows, b);
        let xb = xs.map(|x| &x[b]);
        let sums = tile_sums(w.map(|wb| nibbles(&wb.qs, 0)), xb.map(|x| &x.qs));
        let (d, m) = (halves(w.map(|wb| wb.d)), halves(w.map(|wb| wb.m)));
        for ((acc, x), sums) in acc.iter_mut().zip(xb).zip(sums) {
            let dd = f32x4_mul(d, f32x4_splat(half(x.d)));
            let ms = f32x4_mul(m, f32x4_splat(half(x.s)));
            *acc = f32x4_add(*acc, f32x4_add(f32x4_mul(dd, f32x4_convert_i32x4(sums)), ms));
        }
    }
    acc
}

/// [`q4_1_q8_1`] for one token.
#[inline(always)]
fn q4_1_one(rows: [&[BlockQ4_1]; ROWS], x: &[BlockQ8_1]) -> v128 {
    let rows = rows.map(|r| &r[..x.len()]);
    let mut acc = f32x4_splat(0.0);
    for (b, xb) in x.iter().enumerate() {
        let w = column(&rows, b);
        let sums = one_sums_q4(w.map(|wb| nibbles(&wb.qs, 0)), &xb.qs);
        let dd = f32x4_mul(halves(w.map(|wb| wb.d)), f32x4_splat(half(xb.d)));
        let ms = f32x4_mul(halves(w.map(|wb| wb.m)), f32x4_splat(half(xb.s)));
        acc = f32x4_add(acc, f32x4_add(f32x4_mul(dd, f32x4_convert_i32x4(sums)), ms));
    }
    acc
}

/// As [`q4_1_q8_1`] for `ggml_vec_dot_q4_0_q8_0`: per block `acc += (Σ (q_w - 8) q_x · d_w) · d_x`.
pub(super) fn q4_0_q8_0(rows: [&[BlockQ4_0]; ROWS], xs: &[&[BlockQ8_0]], out: &mut [f32]) {
    by_tiles(xs, out, |xs| q4_0_tile(rows, xs), |x| q4_0_one(rows, x));
}

/// [`q4_0_q8_0`] for a tile of tokens: each token's accumulators.
#[inline(always)]
fn q4_0_tile(rows: [&[BlockQ4_0]; ROWS], xs: [&[BlockQ8_0]; TOKENS]) -> [v128; TOKENS] {
    let blocks = xs[0].len();
    let (rows, xs) = (rows.map(|r| &r[..blocks]), xs.map(|x| &x[..blocks]));
    let mut acc = [f32x4_splat(0.0); TOKENS];
    for b in 0..blocks {
        let w = column(&rows, b);
        let xb = xs.map(|x| &x[b]);
        let sums = tile_sums(w.map(|wb| nibbles(&wb.qs, 8)), xb.map(|x| &x.qs));
        let d = halves(w.map(|wb| wb.d));
        for ((acc, x), sums) in acc.iter_mut().zip(xb).zip(sums) {
            let scaled = f32x4_mul(f32x4_convert_i32x4(sums), d);
            *acc = f32x4_add(*acc, f32x4_mul(scaled, f32x4_splat(half(x.d))));
        }
    }
    acc
}

/// [`q4_0_q8_0`] for one token.
#[inline(always)]
fn q4_0_one(rows: [&[BlockQ4_0]; ROWS], x: &[BlockQ8_0]) -> v128 {
    let rows = rows.map(|r| &r[..x.len()]);
    let mut acc = f32x4_splat(0.0);
    for (b, xb) in x.iter().enumerate() {
        let w = column(&rows, b);
        let sums = one_sums_q4(w.map(|wb| nibbles(&wb.qs, 8)), &xb.qs);
        let scaled = f32x4_mul(f32x4_convert_i32x4(sums), halves(w.map(|wb| wb.d)));
        acc = f32x4_add(acc, f32x4_mul(scaled, f32x4_splat(half(xb.d))));
    }
    acc
}

/// As [`q4_1_q8_1`] for `ggml_vec_dot_q8_0_q8_0`: per block `acc += Σ q_w q_x · (d_w d_x)`.
pub(super) fn q8_0_q8_0(rows: [&[BlockQ8_0]; ROWS], xs: &[&[BlockQ8_0]], out: &mut [f32]) {
    by_tiles(xs, out, |xs| q8_0_tile(rows, xs), |x| q8_0_one(rows, x));
}

/// [`q8_0_q8_0`] for a tile of tokens: each token's accumulators.
#[inline(always)]
fn q8_0_tile(rows: [&[BlockQ8_0]; ROWS], xs: [&[BlockQ8_0]; TOKENS]) -> [v128; TOKENS] {
    let blocks = xs[0].len();
    let (rows, xs) = (rows.map(|r| &r[..blocks]), xs.map(|x| &x[..blocks]));
    let mut acc = [f32x4_splat(0.0); TOKENS];
    for b in 0..blocks {
        let w = column(&rows, b);
        let xb = xs.map(|x| &x[b]);
        let sums = tile_sums(w.map(|wb| halves_of(&wb.qs)), xb.map(|x| &x.qs));
        let d = halves(w.map(|wb| wb.d));
        for ((acc, x), sums) in acc.iter_mut().zip(xb).zip(sums) {
            let dd = f32x4_mul(d, f32x4_splat(half(x.d)));
            *acc = f32x4_add(*acc, f32x4_mul(f32x4_convert_i32x4(sums), dd));
        }
    }
    acc
}

/// [`q8_0_q8_0`] for one token.
#[inline(always)]
fn q8_0_one(rows: [&[BlockQ8_0]; ROWS], x: &[BlockQ8_0]) -> v128 {
    let rows = rows.map(|r| &r[..x.len()]);
    let mut acc = f32x4_splat(0.0);
    for (b, xb) in x.iter().enumerate() {
        let w = column(&rows, b);
        let sums = one_sums(w.map(|wb| halves_of(&wb.qs)), &xb.qs);
        let dd = f32x4_mul(halves(w.map(|wb| wb.d)), f32x4_splat(half(xb.d)));
        acc = f32x4_add(acc, f32x4_mul(f32x4_convert_i32x4(sums), dd));
    }
    acc
}
