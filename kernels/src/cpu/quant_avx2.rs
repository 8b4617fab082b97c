//! AVX2 + F16C row kernels for the quantised matvec: eight weight rows against one activation
//! vector at a time, one row per SIMD lane, bit-identical to the portable dot products.
//!
//! Why rows in lanes: llama.cpp's portable kernels add each block's scaled sum into one f32
//! accumulator in block order, a chain that neither reassociates nor vectorises within a row.
//! Eight rows have eight independent chains, so lane `r` of an f32x8 accumulator adds row
//! `r`'s block values in exactly the reference order, with the reference's own operations
//! (IEEE mul and add, never fused). The integer part of each block is exact in i32, so it is
//! computed in whatever order is fastest and reduced across lanes with horizontal adds.
//!
//! Every function here needs AVX2 and F16C; callers check with `is_x86_feature_detected!`.

use std::arch::x86_64::*;

use super::quant_matvec::half;
use crate::quant::{BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockQ8_1};

/// Rows a kernel here takes at once: one per f32 lane of a 256-bit register.
pub(super) const ROWS: usize = 8;

/// Tokens a prefill tile of the interleaved kernels takes at once: each block's quant bytes
/// are loaded and unpacked once for all of them.
pub(super) const TOKENS: usize = 4;

/// The eight f16 values `bits[r]` as f32 lanes.
#[target_feature(enable = "avx2,f16c")]
fn halves(bits: [[u8; 2]; ROWS]) -> __m256 {
    _mm256_cvtph_ps(bytemuck::cast::<[[u8; 2]; ROWS], __m128i>(bits))
}

/// Asks for the `len` bytes at `from` to be brought into cache. The eight rows of a group are
/// eight interleaved streams, which the hardware prefetchers follow poorly; the group after
/// them is one contiguous run, fetched a slice per block while this group is computed.
/// Prefetching never faults, so `from` may point past the matrix.
#[target_feature(enable = "avx2,f16c")]
pub(super) fn prefetch(from: *const u8, len: usize) {
    for line in (0..len).step_by(64) {
        _mm_prefetch::<_MM_HINT_T0>(from.wrapping_add(line).cast());
    }
}

/// Block `b` of every row; every row must be longer than `b`.
#[inline(always)]
fn column<B: Copy>(rows: &[&[B]; ROWS], b: usize) -> [B; ROWS] {
    debug_assert!(rows.iter().all(|r| b < r.len()));
    // SAFETY: the kernels below assert at entry that every row has `x.len()` blocks and only
    // ask for `b < x.len()`.
    rows.map(|r| unsafe { *r.get_unchecked(b) })
}

/// Reduces eight i32x8 vectors to one: lane `r` is the sum of all lanes of `v[r]`.
#[target_feature(enable = "avx2,f16c")]
fn sum_lanes(v: [__m256i; ROWS]) -> __m256i {
    // Pairwise adds leave [r0 lo, r1 lo, r2 lo, r3 lo | r0 hi, r1 hi, r2 hi, r3 hi] (and the
    // same for rows 4..8); adding the 128-bit halves finishes each row.
    let a = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    let b = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
    _mm256_add_epi32(_mm256_permute2x128_si256::<0x20>(a, b), _mm256_permute2x128_si256::<0x31>(a, b))
}

/// The Q4 blocks of eight rows, transposed: vector `j` holds bytes `4j..4j + 4` of row `r`'s
/// 16 nibble bytes in its 32-bit lane `r` (low nibbles: values `4j..4j + 4`; high nibbles:
/// values `16 + 4j..16 + 4j + 4`). Transposing first lets one broadcast of 4 activation bytes
/// serve all eight rows and leaves each row's sum in its own lane, with no horizontal adds.
#[target_feature(enable = "avx2,f16c")]
fn transpose_nibbles(qs: [[u8; 16]; ROWS]) -> [__m256i; 4] {
    // [row r | row r + 4], then a 4x4 transpose of 32-bit words within each 128-bit half.
    let pair = |r: usize| {
        _mm256_set_m128i(bytemuck::cast::<[u8; 16], __m128i>(qs[r + 4]), bytemuck::cast::<[u8; 16], __m128i>(qs[r]))
    };
    let (r0, r1, r2, r3) = (pair(0), pair(1), pair(2), pair(3));
    let (lo01, hi01) = (_mm256_unpacklo_epi32(r0, r1), _mm256_unpackhi_epi32(r0, r1));
    let (lo23, hi23) = (_mm256_unpacklo_epi32(r2, r3), _mm256_unpackhi_epi32(r2, r3));
    [
        _mm256_unpacklo_epi64(lo01, lo23),
        _mm256_unpackhi_epi64(lo01, lo23),
        _mm256_unpacklo_epi64(hi01, hi23),
        _mm256_unpackhi_epi64(hi01, hi23),
    ]
}

/// Activation bytes `4j..4j + 4` in every 32-bit lane.
#[target_feature(enable = "avx2,f16c")]
fn broadcast4(x: &[i8; 32], j: usize) -> __m256i {
    // One 32-bit load, where four byte loads would be assembled.
    let quad: [i8; 4] = x[4 * j..4 * j + 4].try_into().expect("4 bytes");
    _mm256_set1_epi32(i32::from_le_bytes(bytemuck::cast(quad)))
}

/// The low and high nibbles (bytes 0..16) of the four quant vectors of eight rows' Q4 blocks
/// (from [`transpose_nibbles`], or as the interleaved layout stores them).
#[target_feature(enable = "avx2,f16c")]
fn unpack(t: [__m256i; 4]) -> ([__m256i; 4], [__m256i; 4]) {
    let mask = _mm256_set1_epi8(0x0f);
    (t.map(|v| _mm256_and_si256(v, mask)), t.map(|v| _mm256_and_si256(_mm256_srli_epi16::<4>(v), mask)))
}

/// Lane `r`: Σ nibble · x over the 32 values of row `r`'s block, from [`unpack`]. The i16
/// sums cannot overflow: each holds 8 products of at most 15 · 128.
#[target_feature(enable = "avx2,f16c")]
fn nibble_sums(lo: &[__m256i; 4], hi: &[__m256i; 4], x: &[i8; 32]) -> __m256i {
    let mut acc = _mm256_setzero_si256();
    for j in 0..4 {
        let lo = _mm256_maddubs_epi16(lo[j], broadcast4(x, j));
        let hi = _mm256_maddubs_epi16(hi[j], broadcast4(x, j + 4));
        acc = _mm256_add_epi16(acc, _mm256_add_epi16(lo, hi));
    }
    _mm256_madd_epi16(acc, _mm256_set1_epi16(1))
}

/// The `d` and `m` halves of eight Q4_1 blocks as two f32x8.
#[target_feature(enable = "avx2,f16c")]
fn scales_dm(dm: [[u8; 4]; ROWS]) -> (__m256, __m256) {
    let v = bytemuck::cast::<[[u8; 4]; ROWS], __m256i>(dm);
    // Per 128-bit half: the four d to the low 8 bytes, the four m to the high 8; then the
    // 64-bit quarters reordered to [d 0..4, d 4..8, m 0..4, m 4..8].
    let split = _mm256_setr_epi8(
        0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, 0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,
    );
    let v = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_shuffle_epi8(v, split));
    (_mm256_cvtph_ps(_mm256_castsi256_si128(v)), _mm256_cvtph_ps(_mm256_extracti128_si256::<1>(v)))
}

/// Σ w·x over 32 signed bytes each, as eight i32 partial sums: `|w| · (x · sign w)` keeps the
/// unsigned operand of `maddubs` non-negative; a pair is at most 2 · 128 · 127 < 2^15, since
/// quantised activations stay within ±127.
#[target_feature(enable = "avx2,f16c")]
fn dot_i8_i8(w: __m256i, x: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w)), _mm256_set1_epi16(1))
}

/// Row `r`'s dot with `x`, `llama.cpp ggml_vec_dot_q4_1_q8_1`: per block
/// `acc += (d_w d_x) Σ q_w q_x + m_w s_x`. Each row holds `x.len()` blocks.
#[target_feature(enable = "avx2,f16c")]
pub(super) fn q4_1_q8_1(rows: [&[BlockQ4_1]; ROWS], x: &[BlockQ8_1], ahead: *const u8) -> [f32; ROWS] {
    assert!(rows.iter().all(|r| r.len() == x.len()), "rows and x differ in length");
    let mut acc = _mm256_setzero_ps();
    for (b, xb) in x.iter().enumerate() {
        let step = ROWS * size_of::<BlockQ4_1>();
        prefetch(ahead.wrapping_add(b * step), step);
        let w = column(&rows, b);
        let (lo, hi) = unpack(transpose_nibbles(w.map(|wb| wb.qs)));
        let sums = nibble_sums(&lo, &hi, &xb.qs);
        let (d, m) = scales_dm(w.map(|wb| [wb.d[0], wb.d[1], wb.m[0], wb.m[1]]));
        let dd = _mm256_mul_ps(d, _mm256_set1_ps(half(xb.d)));
        let ms = _mm256_mul_ps(m, _mm256_set1_ps(half(xb.s)));
        acc = _mm256_add_ps(acc, _mm256_add_ps(_mm256_mul_ps(dd, _mm256_cvtepi32_ps(sums)), ms));
    }
    bytemuck::cast(acc)
}

/// As [`q4_1_q8_1`] for `ggml_vec_dot_q4_0_q8_0`: per block `acc += (Σ (q_w - 8) q_x · d_w) · d_x`.
#[target_feature(enable = "avx2,f16c")]
pub(super) fn q4_0_q8_0(rows: [&[BlockQ4_0]; ROWS], x: &[BlockQ8_0], ahead: *const u8) -> [f32; ROWS] {
    assert!(rows.iter().all(|r| r.len() == x.len()), "rows and x differ in length");
    let mut acc = _mm256_setzero_ps();
    for (b, xb) in x.iter().enumerate() {
        let step = ROWS * size_of::<BlockQ4_0>();
        prefetch(ahead.wrapping_add(b * step), step);
        // Σ (q - 8) x = Σ q x - 8 Σ x: the nibbles stay unsigned for `maddubs`.
        let x_sum = _mm256_set1_epi32(xb.qs.iter().map(|&q| i32::from(q)).sum());
        let w = column(&rows, b);
        let (lo, hi) = unpack(transpose_nibbles(w.map(|wb| wb.qs)));
        let sums = _mm256_sub_epi32(nibble_sums(&lo, &hi, &xb.qs), _mm256_slli_epi32::<3>(x_sum));
        let scaled = _mm256_mul_ps(_mm256_cvtepi32_ps(sums), halves(w.map(|wb| wb.d)));
        acc = _mm256_add_ps(acc, _mm256_mul_ps(scaled, _mm256_set1_ps(half(xb.d))));
    }
    bytemuck::cast(acc)
}

/// As [`q4_1_q8_1`] for `ggml_vec_dot_q8_0_q8_0`: per block `acc += Σ q_w q_x · (d_w d_x)`.
#[target_feature(enable = "avx2,f16c")]
pub(super) fn q8_0_q8_0(rows: [&[BlockQ8_0]; ROWS], x: &[BlockQ8_0], ahead: *const u8) -> [f32; ROWS] {
    assert!(rows.iter().all(|r| r.len() == x.len()), "rows and x differ in length");
    let mut acc = _mm256_setzero_ps();
    for (b, xb) in x.iter().enumerate() {
        let step = ROWS * size_of::<BlockQ8_0>();
        prefetch(ahead.wrapping_add(b * step), step);
        let xq = bytemuck::cast::<[i8; 32], __m256i>(xb.qs);
        let w = column(&rows, b);
        let sums = sum_lanes(w.map(|wb| dot_i8_i8(bytemuck::cast::<[i8; 32], __m256i>(wb.qs), xq)));
        let dd = _mm256_mul_ps(halves(w.map(|wb| wb.d)), _mm256_set1_ps(half(xb.d)));
        acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_cvtepi32_ps(sums), dd));
    }
    bytemuck::cast(acc)
}

/// Block `b`'s piece of a group in the interleaved layout ([`super::interleave`]): eight
/// rows' f16 fields `field` (0: d, 1: m) as f32 lanes.
#[target_feature(enable = "avx2,f16c")]
fn field(group_block: &[u8], field: usize) -> __m256 {
    _mm256_cvtph_ps(bytemuck::cast::<[u8; 16], __m128i>(group_block[16 * field..][..16].try_into().unwrap()))
}

/// The 32-byte vector at `offset` of an interleaved group block.
#[target_feature(enable = "avx2,f16c")]
fn quads(group_block: &[u8], offset: usize) -> __m256i {
    bytemuck::cast::<[u8; 32], __m256i>(group_block[offset..][..32].try_into().unwrap())
}

/// Checks that each of `xs` has as many blocks as `group` holds group blocks of `step` bytes.
fn check_group<B, const T: usize>(group: &[u8], xs: &[&[B]; T], step: usize) {
    let blocks = xs[0].len();
    assert!(xs.iter().all(|x| x.len() == blocks), "activation vectors differ in length");
    assert_eq!(group.len(), blocks * step, "group and x differ in length");
}

/// [`q4_1_q8_1`] on one group of eight rows in the interleaved layout (`group` holds as many
/// group blocks as each of `xs`) with each of `T` vectors: the same arithmetic, with the
/// transposes done once at load and each block's nibbles unpacked once for all the vectors.
#[target_feature(enable = "avx2,f16c")]
pub(super) fn q4_1_q8_1_interleaved<const T: usize>(
    group: &[u8],
    xs: [&[BlockQ8_1]; T],
    ahead: *const u8,
) -> [[f32; ROWS]; T] {
    const STEP: usize = ROWS * size_of::<BlockQ4_1>();
    check_group(group, &xs, STEP);
    let mut acc = [_mm256_setzero_ps(); T];
    for (b, gb) in group.chunks_exact(STEP).enumerate() {
        prefetch(ahead.wrapping_add(b * STEP), STEP);
        let (lo, hi) = unpack(std::array::from_fn(|j| quads(gb, 32 + 32 * j)));
        let (d, m) = (field(gb, 0), field(gb, 1));
        for (acc, x) in acc.iter_mut().zip(xs) {
            let xb = &x[b];
            let sums = nibble_sums(&lo, &hi, &xb.qs);
            let dd = _mm256_mul_ps(d, _mm256_set1_ps(half(xb.d)));
            let ms = _mm256_mul_ps(m, _mm256_set1_ps(half(xb.s)));
            *acc = _mm256_add_ps(*acc, _mm256_add_ps(_mm256_mul_ps(dd, _mm256_cvtepi32_ps(sums)), ms));
        }
    }
    acc.map(bytemuck::cast)
}

/// [`q4_0_q8_0`] on one interleaved group, as [`q4_1_q8_1_interleaved`].
#[target_feature(enable = "avx2,f16c")]
pub(super) fn q4_0_q8_0_interleaved<const T: usize>(
    group: &[u8],
    xs: [&[BlockQ8_0]; T],
    ahead: *const u8,
) -> [[f32; ROWS]; T] {
    const STEP: usize = ROWS * size_of::<BlockQ4_0>();
    check_group(group, &xs, STEP);
    let mut acc = [_mm256_setzero_ps(); T];
    for (b, gb) in group.chunks_exact(STEP).enumerate() {
        prefetch(ahead.wrapping_add(b * STEP), STEP);
        let (lo, hi) = unpack(std::array::from_fn(|j| quads(gb, 16 + 32 * j)));
        let d = field(gb, 0);
        for (acc, x) in acc.iter_mut().zip(xs) {
            let xb = &x[b];
            // Σ (q - 8) x = Σ q x - 8 Σ x: the nibbles stay unsigned for `maddubs`.
            let x_sum = _mm256_set1_epi32(xb.qs.iter().map(|&q| i32::from(q)).sum());
            let sums = _mm256_sub_epi32(nibble_sums(&lo, &hi, &xb.qs), _mm256_slli_epi32::<3>(x_sum));
            let scaled = _mm256_mul_ps(_mm256_cvtepi32_ps(sums), d);
            *acc = _mm256_add_ps(*acc, _mm256_mul_ps(scaled, _mm256_set1_ps(half(xb.d))));
        }
    }
    acc.map(bytemuck::cast)
}

/// [`q8_0_q8_0`] on one interleaved group (vector `j` holds bytes `4j..4j + 4` of each row),
/// as [`q4_1_q8_1_interleaved`]: `|w|` is taken once per block for all the vectors.
#[target_feature(enable = "avx2,f16c")]
pub(super) fn q8_0_q8_0_interleaved<const T: usize>(
    group: &[u8],
    xs: [&[BlockQ8_0]; T],
    ahead: *const u8,
) -> [[f32; ROWS]; T] {
    const STEP: usize = ROWS * size_of::<BlockQ8_0>();
    check_group(group, &xs, STEP);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); T];
    for (b, gb) in group.chunks_exact(STEP).enumerate() {
        prefetch(ahead.wrapping_add(b * STEP), STEP);
        let w: [__m256i; 8] = std::array::from_fn(|j| quads(gb, 16 + 32 * j));
        let abs = w.map(|w| _mm256_abs_epi8(w));
        let d = field(gb, 0);
        for (acc, x) in acc.iter_mut().zip(xs) {
            let xb = &x[b];
            // As [`dot_i8_i8`], with `|w|` shared.
            let mut sums = _mm256_setzero_si256();
            for j in 0..8 {
                let signed = _mm256_sign_epi8(broadcast4(&xb.qs, j), w[j]);
                sums = _mm256_add_epi32(sums, _mm256_madd_epi16(_mm256_maddubs_epi16(abs[j], signed), ones));
            }
            let dd = _mm256_mul_ps(d, _mm256_set1_ps(half(xb.d)));
            *acc = _mm256_add_ps(*acc, _mm256_mul_ps(_mm256_cvtepi32_ps(sums), dd));
        }
    }
    acc.map(bytemuck::cast)
}

/// One block of llama.cpp's `quantize_row_q8_0_ref` (see [`crate::quant::quantize_q8_0`]):
/// `d = max|x| / 127`, `q = round(x · (1 / d))` rounded half away from zero, and `Σ q` for
/// Q8_1. The same float operations lane by lane, so the same bits.
#[target_feature(enable = "avx2,f16c")]
pub(crate) fn quantize_block(x: &[f32; 32]) -> (f32, [i8; 32], i32) {
    let v: [__m256; 4] =
        std::array::from_fn(|i| bytemuck::cast::<[f32; 8], __m256>(x[8 * i..][..8].try_into().unwrap()));
    let sign = _mm256_set1_ps(-0.0);
    // max|x|, NaN ignored as `f32::max` does: `max_ps` returns its second operand when either
    // is NaN, and the running maximum never is.
    let mut amax = _mm256_setzero_ps();
    for v in v {
        amax = _mm256_max_ps(_mm256_andnot_ps(sign, v), amax);
    }
    let amax = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps::<1>(amax));
    let amax = _mm_max_ps(amax, _mm_movehl_ps(amax, amax));
    let amax = _mm_cvtss_f32(_mm_max_ss(amax, _mm_movehdup_ps(amax)));
    let d = amax / 127.0;
    let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
    // round(p) = trunc(p + copysign(0.49999997, p)), exact for every float; NaN becomes 0
    // and the rest saturates to i8, as `as i8` does.
    let just_under_half = _mm256_set1_ps(f32::from_bits(0.5f32.to_bits() - 1));
    let q = v.map(|v| {
        let p = _mm256_mul_ps(v, id);
        let r = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(_mm256_add_ps(
            p,
            _mm256_or_ps(_mm256_and_ps(p, sign), just_under_half),
        ));
        let r = _mm256_and_ps(r, _mm256_cmp_ps::<_CMP_ORD_Q>(r, r));
        _mm256_cvttps_epi32(_mm256_max_ps(_mm256_min_ps(r, _mm256_set1_ps(127.0)), _mm256_set1_ps(-128.0)))
    });
    let sum = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    let sum: [i32; 8] = bytemuck::cast(sum);
    // i32 → i16 → i8 packs interleave the 128-bit halves; the permute restores value order.
    let bytes = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    let bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    (d, bytemuck::cast(bytes), sum.iter().sum())
}
