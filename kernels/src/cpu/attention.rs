//! One query head's attention over an f16 KV cache, as llama.cpp's CPU path computes it without
//! flash attention: the query rounded to f16, `q·k` per position as ggml's portable
//! `vec_dot_f16` (exact f32 products summed in f64, in index order), scaled, [`softmax`], then
//! each output value a sum over positions, in position order and in f64, of the weight rounded
//! to f16 times the cached value.
//!
//! The sums are sequential chains, so the AVX2 path keeps each chain intact and runs many at
//! once: scores for eight positions in the lanes of f64x4 pairs, values for 32 dimensions
//! side by side. The additions are the same operations in the same order, so the results are
//! bit-identical to the portable path.

use half::f16;

use super::ops::softmax;

/// Where one KV head sits in the cache: position `j`'s key is
/// `k[j * stride + offset..][..head_dim]`, and its value likewise in `v`.
#[derive(Clone, Copy, Debug)]
pub struct KvHead<'a> {
    pub k: &'a [f16],
    pub v: &'a [f16],
    pub stride: usize,
    pub offset: usize,
}

impl KvHead<'_> {
    fn key(&self, j: usize, head_dim: usize) -> &[f16] {
        &self.k[j * self.stride + self.offset..][..head_dim]
    }

    fn value(&self, j: usize, head_dim: usize) -> &[f16] {
        &self.v[j * self.stride + self.offset..][..head_dim]
    }
}

/// `out = softmax(q·kᵀ · scale) v` over cache positions `0..len` (`out.len() == q.len()`).
pub fn attend_head(q: &[f32], kv: KvHead<'_>, len: usize, scale: f32, out: &mut [f32]) {
    let mut q = q.to_vec();
    round_to_f16(&mut q);
    let mut scores = vec![0.0f32; len];
    key_scores(&q, kv, scale, &mut scores);
    softmax(&mut scores);
    // The weights meet the f16 values rounded to f16 themselves.
    round_to_f16(&mut scores);
    weighted_values(&scores, kv, out);
}

/// Each value rounded to the nearest f16 (ties to even) and back.
fn round_to_f16(v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: the CPU has AVX2 and F16C, checked just above.
        return unsafe { avx2::round_to_f16(v) };
    }
    for x in v {
        *x = f16::from_f32(*x).to_f32();
    }
}

/// `scores[j] = (q · key j) · scale`, the dot product as [`super::ops::dot_f16`].
fn key_scores(q: &[f32], kv: KvHead<'_>, scale: f32, scores: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2::usable(q.len()) {
        // SAFETY: `usable` checked that the CPU has AVX2 and F16C.
        return unsafe { avx2::key_scores(q, kv, scale, scores) };
    }
    key_scores_portable(q, kv, scale, 0, scores);
}

/// [`key_scores`] for positions `first..first + scores.len()`. Each position's dot product is
/// one chain of f64 adds, which alone would wait on every add; four positions' chains run side
/// by side, each still the same adds in the same order (what wasm, with no f64 lanes worth
/// using here, gets instead of the AVX2 path).
fn key_scores_portable(q: &[f32], kv: KvHead<'_>, scale: f32, first: usize, scores: &mut [f32]) {
    const SIDE_BY_SIDE: usize = 4;
    let hd = q.len();
    let done = scores.len() / SIDE_BY_SIDE * SIDE_BY_SIDE;
    let mut fours = scores.chunks_exact_mut(SIDE_BY_SIDE);
    for (n, s) in fours.by_ref().enumerate() {
        let keys: [&[f16]; SIDE_BY_SIDE] = std::array::from_fn(|p| kv.key(first + SIDE_BY_SIDE * n + p, hd));
        let mut acc = [0.0f64; SIDE_BY_SIDE];
        for (i, &q) in q.iter().enumerate() {
            for (a, k) in acc.iter_mut().zip(keys) {
                *a += f64::from(k[i].to_f32() * q);
            }
        }
        for (s, a) in s.iter_mut().zip(acc) {
            *s = a as f32 * scale;
        }
    }
    for (j, s) in (first + done..).zip(fours.into_remainder()) {
        let dot = kv.key(j, hd).iter().zip(q).fold(0.0f64, |acc, (k, q)| acc + f64::from(k.to_f32() * q));
        *s = dot as f32 * scale;
    }
}

/// `out[d] = Σ_j weights[j] · value j [d]`, summed over `j` in order, in f64.
fn weighted_values(weights: &[f32], kv: KvHead<'_>, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2::usable(out.len()) {
        // SAFETY: `usable` checked that the CPU has AVX2 and F16C.
        return unsafe { avx2::weighted_values(weights, kv, out) };
    }
    weighted_values_portable(weights, kv, 0, out);
}

/// [`weighted_values`] for dimensions `first..first + out.len()` of each value.
fn weighted_values_portable(weights: &[f32], kv: KvHead<'_>, first: usize, out: &mut [f32]) {
    let mut acc = vec![0.0f64; out.len()];
    for (j, &p) in weights.iter().enumerate() {
        let v = &kv.value(j, first + out.len())[first..];
        for (a, v) in acc.iter_mut().zip(v) {
            *a += f64::from(p * v.to_f32());
        }
    }
    for (o, a) in out.iter_mut().zip(acc) {
        *o = a as f32;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use half::f16;

    use super::KvHead;

    /// Whether the CPU has AVX2 and F16C.
    pub(super) fn available() -> bool {
        super::super::SimdLevel::detected().has_avx2()
    }

    /// Whether the AVX2 kernels run for heads of `head_dim`: [`available`], and the head is
    /// whole 8-value chunks.
    pub(super) fn usable(head_dim: usize) -> bool {
        head_dim.is_multiple_of(8) && available()
    }

    /// Eight f16 as f32 lanes.
    #[target_feature(enable = "avx2,f16c")]
    fn load8(h: &[f16]) -> __m256 {
        let h: [f16; 8] = h[..8].try_into().expect("eight halves");
        _mm256_cvtph_ps(bytemuck::cast::<[u16; 8], __m128i>(h.map(f16::to_bits)))
    }

    /// [`super::round_to_f16`] eight at a time with F16C's conversions (round to nearest even,
    /// as `f16::from_f32`).
    #[target_feature(enable = "avx2,f16c")]
    pub(super) fn round_to_f16(v: &mut [f32]) {
        let mut chunks = v.chunks_exact_mut(8);
        for c in chunks.by_ref() {
            let x = bytemuck::cast::<[f32; 8], __m256>(c.try_into().expect("eight values"));
            let rounded = _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x));
            c.copy_from_slice(&bytemuck::cast::<__m256, [f32; 8]>(rounded));
        }
        for x in chunks.into_remainder() {
            *x = f16::from_f32(*x).to_f32();
        }
    }

    /// 8x8 transpose: lane `l` of result `i` is lane `i` of `rows[l]`.
    #[target_feature(enable = "avx2,f16c")]
    fn transpose(rows: [__m256; 8]) -> [__m256; 8] {
        let t = |a: usize, b: usize| (_mm256_unpacklo_ps(rows[a], rows[b]), _mm256_unpackhi_ps(rows[a], rows[b]));
        let (t0, t1) = t(0, 1);
        let (t2, t3) = t(2, 3);
        let (t4, t5) = t(4, 5);
        let (t6, t7) = t(6, 7);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xee>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xee>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xee>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xee>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ]
    }

    /// Adds `v`'s eight f32 lanes, widened, to the f64 lanes of `acc` (lanes 0..4, 4..8).
    #[target_feature(enable = "avx2,f16c")]
    fn add_wide(acc: &mut [__m256d; 2], v: __m256) {
        acc[0] = _mm256_add_pd(acc[0], _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
        acc[1] = _mm256_add_pd(acc[1], _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v)));
    }

    /// Scores of positions `first..first + 8 G`, one per lane of `G` groups of eight (the
    /// positions past `last` repeat it, for a short tail). Eight products per key are formed
    /// side by side, transposed so each lane is one position, and added in order; `G` groups
    /// keep that many independent f64 chains in flight, as each add waits on the previous one.
    #[target_feature(enable = "avx2,f16c")]
    fn score_groups<const G: usize>(q: &[f32], kv: KvHead<'_>, first: usize, last: usize, scale: f32) -> [[f32; 8]; G] {
        let hd = q.len();
        let mut acc = [[_mm256_setzero_pd(); 2]; G];
        for c in (0..hd).step_by(8) {
            let qc = bytemuck::cast::<[f32; 8], __m256>(q[c..c + 8].try_into().expect("eight values"));
            for (g, acc) in acc.iter_mut().enumerate() {
                let key = |l: usize| &kv.key((first + 8 * g + l).min(last), hd)[c..];
                for column in transpose(std::array::from_fn(|l| _mm256_mul_ps(load8(key(l)), qc))) {
                    add_wide(acc, column);
                }
            }
        }
        acc.map(|acc| {
            let dots = _mm256_set_m128(_mm256_cvtpd_ps(acc[1]), _mm256_cvtpd_ps(acc[0]));
            bytemuck::cast(_mm256_mul_ps(dots, _mm256_set1_ps(scale)))
        })
    }

    /// [`super::key_scores`], sixteen positions at a time, then eight, then what is left.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) fn key_scores(q: &[f32], kv: KvHead<'_>, scale: f32, scores: &mut [f32]) {
        let Some(last) = scores.len().checked_sub(1) else { return };
        let mut chunks = scores.chunks_exact_mut(16);
        for (i, out) in chunks.by_ref().enumerate() {
            out.copy_from_slice(score_groups::<2>(q, kv, 16 * i, last, scale).as_flattened());
        }
        let rest = chunks.into_remainder();
        let first = last + 1 - rest.len();
        for (i, out) in rest.chunks_mut(8).enumerate() {
            out.copy_from_slice(&score_groups::<1>(q, kv, first + 8 * i, last, scale)[0][..out.len()]);
        }
    }

    /// [`super::weighted_values`], 32 dimensions (eight f64x4 chains) at a time; heads whose
    /// size is not a multiple of 32 finish with 8 at a time.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) fn weighted_values(weights: &[f32], kv: KvHead<'_>, out: &mut [f32]) {
        let hd = out.len();
        for (c, out) in out.chunks_mut(32).enumerate() {
            let first = c * 32;
            let mut acc = [[_mm256_setzero_pd(); 2]; 4];
            for (j, &p) in weights.iter().enumerate() {
                let p = _mm256_set1_ps(p);
                let v = &kv.value(j, hd)[first..];
                for (k, acc) in acc.iter_mut().enumerate().take(out.len() / 8) {
                    add_wide(acc, _mm256_mul_ps(p, load8(&v[8 * k..])));
                }
            }
            for (o, acc) in out.chunks_exact_mut(8).zip(acc) {
                let sums = _mm256_set_m128(_mm256_cvtpd_ps(acc[1]), _mm256_cvtpd_ps(acc[0]));
                o.copy_from_slice(&bytemuck::cast::<__m256, [f32; 8]>(sums));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The arithmetic spelled out once more, as the llama forward pass first wrote it.
    fn reference(q: &[f32], kv: KvHead<'_>, len: usize, scale: f32) -> Vec<f32> {
        let hd = q.len();
        let q16: Vec<f16> = q.iter().map(|&v| f16::from_f32(v)).collect();
        let mut scores: Vec<f32> = (0..len).map(|j| super::super::ops::dot_f16(kv.key(j, hd), &q16) * scale).collect();
        softmax(&mut scores);
        let mut acc = vec![0.0f64; hd];
        for (j, &p) in scores.iter().enumerate() {
            let p = f16::from_f32(p).to_f32();
            for (a, v) in acc.iter_mut().zip(kv.value(j, hd)) {
                *a += f64::from(p * v.to_f32());
            }
        }
        acc.into_iter().map(|a| a as f32).collect()
    }

    #[test]
    fn matches_the_reference_bit_for_bit() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Values over several orders of magnitude, so f64 sums do round.
            ((seed % 20001) as f32 - 10000.0) / 1000.0 * 2f32.powi(((seed >> 40) % 24) as i32 - 12)
        };
        // Head sizes with and without whole 32-dimension chunks; lengths with partial groups.
        for (hd, heads, len) in [(64, 3, 133), (64, 1, 1), (40, 2, 17), (8, 2, 8), (6, 1, 5)] {
            let stride = hd * heads;
            let k: Vec<f16> = (0..len * stride).map(|_| f16::from_f32(next())).collect();
            let v: Vec<f16> = (0..len * stride).map(|_| f16::from_f32(next())).collect();
            for head in 0..heads {
                let kv = KvHead { k: &k, v: &v, stride, offset: head * hd };
                let q: Vec<f32> = (0..hd).map(|_| next()).collect();
                let scale = 1.0 / (hd as f32).sqrt();
                let mut out = vec![0.0; hd];
                attend_head(&q, kv, len, scale, &mut out);
                let want = reference(&q, kv, len, scale);
                let same = out.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "head_dim {hd} len {len} head {head}: {out:?} vs {want:?}");
            }
        }
    }

    /// Sums whose order shows: products of ±65504² that cancel, with small ones between them
    /// that an f64 partial sum of 2^32 rounds away (or keeps, depending on where they fall).
    #[test]
    fn sums_keep_their_order() {
        let (big, len, hd) = (65504.0f32, 37, 64);
        let small = |i: usize| 2f32.powi(-14) * (1.0 + (i * 37 % 101) as f32 / 64.0);
        let sign = |i: usize| if (i / 2).is_multiple_of(2) { 1.0 } else { -1.0 };
        let k: Vec<f16> = (0..len * hd)
            .map(|n| {
                let (j, i) = (n / hd, n % hd);
                f16::from_f32(if (i + j) % 2 == 0 { sign(i + j) * big } else { small(n) })
            })
            .collect();
        let q: Vec<f32> = (0..hd).map(|i| if i % 2 == 0 { big } else { small(i) }).collect();
        let kv = KvHead { k: &k, v: &k, stride: hd, offset: 0 };
        let (mut fast, mut slow) = (vec![0.0; len], vec![0.0; len]);
        key_scores(&q, kv, 1.0, &mut fast);
        key_scores_portable(&q, kv, 1.0, 0, &mut slow);
        assert_eq!(
            fast.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            slow.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert!(slow.iter().any(|&v| v != 0.0 && v.abs() < 1.0), "the test needs sums that keep small terms");

        // Values: weights ±2^60 that cancel, with weights near 1 between them.
        let w: Vec<f32> =
            (0..len - 1).map(|j| if j % 2 == 0 { sign(j) * 2f32.powi(60) } else { 1.0 + j as f32 / 64.0 }).collect();
        let v: Vec<f16> = (0..len * hd).map(|n| f16::from_f32(1.0 + (n % 4) as f32 / 4.0)).collect();
        let kv = KvHead { k: &k, v: &v, stride: hd, offset: 0 };
        let (mut fast, mut slow) = (vec![0.0; hd], vec![0.0; hd]);
        weighted_values(&w, kv, &mut fast);
        weighted_values_portable(&w, kv, 0, &mut slow);
        assert_eq!(
            fast.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            slow.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert!(slow.iter().any(|&v| v != 0.0 && v.abs() < 1e6), "the test needs sums that keep small terms");
    }

    #[test]
    fn f16_rounding_matches_half() {
        // Ties, subnormals, overflow to infinity, NaN, and ordinary values.
        let mut v: Vec<f32> = (0..4000u32).map(|i| f32::from_bits(0x3300_0000 + i * 0x0004_1235)).collect();
        v.extend([65519.0, 65520.0, 1e-8, -5.96e-8, 2049.0, 2051.0, f32::INFINITY, f32::NAN, -0.0]);
        let want: Vec<f32> = v.iter().map(|&x| f16::from_f32(x).to_f32()).collect();
        round_to_f16(&mut v);
        for (g, w) in v.iter().zip(&want) {
            assert!(g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()), "{g} vs {w}");
        }
    }
}
