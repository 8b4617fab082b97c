//! The element-wise and row-wise ops of a transformer layer, on the CPU. Each follows the
//! arithmetic of ggml's portable x86 CPU op (accumulator widths, summation order, and its own
//! `exp`), so the forward pass reproduces llama.cpp's bits; every step is plain f32/f64
//! arithmetic, so wasm computes the same.

use half::f16;

/// RMSNorm in place, then scale by `weight` (ggml `rms_norm` + `mul`): the mean of squares is
/// accumulated in f64 as ggml does.
pub fn rms_norm(x: &mut [f32], weight: &[f32], eps: f32) {
    let sum: f64 = x.iter().map(|&v| f64::from(v * v)).sum();
    let mean = (sum / x.len().max(1) as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for (v, w) in x.iter_mut().zip(weight) {
        *v = *v * scale * w;
    }
}

/// Rotary position embedding, "normal" layout (ggml `rope` mode 0, used by llama): dimension
/// pairs are adjacent, `(x[2i], x[2i+1])` rotated by `pos * base^(-2i / n_rot)`. Only the first
/// `n_rot` values of each head rotate.
pub fn rope_norm(x: &mut [f32], head_dim: usize, n_rot: usize, pos: usize, base: f32) {
    let rotations = rope_rotations(n_rot, pos, base);
    for head in x.chunks_exact_mut(head_dim) {
        for (pair, &(sin, cos)) in head[..n_rot].chunks_exact_mut(2).zip(&rotations) {
            let (a, b) = (pair[0], pair[1]);
            pair[0] = a * cos - b * sin;
            pair[1] = a * sin + b * cos;
        }
    }
}

/// `(sin θ_i, cos θ_i)` for the `n_rot / 2` pairs at `pos`, `θ_i = pos · base^(-2i / n_rot)`
/// by repeated multiplication as ggml does. Every head of a token turns by the same angles, so
/// they are computed once per call rather than once per head (as ggml's rope cache).
fn rope_rotations(n_rot: usize, pos: usize, base: f32) -> Vec<(f32, f32)> {
    let theta_scale = base.powf(-2.0 / n_rot as f32);
    let mut theta = pos as f32;
    (0..n_rot / 2)
        .map(|_| {
            let rotation = theta.sin_cos();
            theta *= theta_scale;
            rotation
        })
        .collect()
}

/// Rotary position embedding, "NeoX" layout (ggml `rope` mode 2, used by qwen2 and gemma):
/// dimension `i` pairs with `i + n_rot / 2`.
pub fn rope_neox(x: &mut [f32], head_dim: usize, n_rot: usize, pos: usize, base: f32) {
    let rotations = rope_rotations(n_rot, pos, base);
    let half = n_rot / 2;
    for head in x.chunks_exact_mut(head_dim) {
        for (i, &(sin, cos)) in rotations.iter().enumerate() {
            let (a, b) = (head[i], head[i + half]);
            head[i] = a * cos - b * sin;
            head[i + half] = a * sin + b * cos;
        }
    }
}

/// `exp(x)` as ggml's SSE2 `ggml_v_expf` computes it (ARM's optimized-routines algorithm:
/// range reduction by ln 2, a degree-5 polynomial, exponent bits added directly), one lane at
/// a time with unfused multiply-adds. Within about 1.5 ulp of the true value.
pub fn expf_ggml(x: f32) -> f32 {
    let madd = |a: f32, b: f32, c: f32| a * b + c;
    let nmadd = |a: f32, b: f32, c: f32| c - a * b;
    let r = f32::from_bits(0x4b40_0000); // 0x1.8p23
    let z = madd(x, f32::from_bits(0x3fb8_aa3b), r); // x * log2(e) + r
    let n = z - r;
    let b = nmadd(n, f32::from_bits(0x35bf_be8e), nmadd(n, f32::from_bits(0x3f31_7200), x));
    let e = z.to_bits().wrapping_shl(23);
    let k = f32::from_bits(e.wrapping_add(1.0f32.to_bits()));
    let u = b * b;
    let j = madd(
        madd(
            madd(f32::from_bits(0x3c07_2010), b, f32::from_bits(0x3d2b_9f17)),
            u,
            madd(f32::from_bits(0x3e2a_af33), b, f32::from_bits(0x3eff_fedb)),
        ),
        u,
        f32::from_bits(0x3f7f_fff6) * b,
    );
    if n.abs() <= 126.0 {
        return madd(j, k, k);
    }
    let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
    let s1 = f32::from_bits(g.wrapping_add(0x7f00_0000));
    let s2 = f32::from_bits(e.wrapping_sub(g));
    if n.abs() > 192.0 { s1 * s1 } else { madd(s2, j, s2) * s1 }
}

/// [`expf_ggml`] of every value, in place: eight lanes at a time with AVX2 (the same
/// operations lane by lane, so the same bits), the rest one at a time.
fn expf_ggml_all(v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::SimdLevel::detected().has_avx2() {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { avx2::expf_ggml_all(v) };
    }
    for x in v {
        *x = expf_ggml(*x);
    }
}

/// Softmax in place, as ggml `soft_max` on x86: max-subtracted [`expf_ggml`], summed four at
/// a time as `(v0 + v1) + (v2 + v3)` in f32 and the groups in f64. A short last group counts
/// as padded with zeros (llama.cpp pads the KV length, and masked positions add exact zeros).
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for v in x.iter_mut() {
        *v -= max;
    }
    expf_ggml_all(x);
    let mut sum = 0.0f64;
    for group in x.chunks(4) {
        let mut v = [0.0f32; 4];
        v[..group.len()].copy_from_slice(group);
        sum += f64::from((v[0] + v[1]) + (v[2] + v[3]));
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// SwiGLU: `gate = silu(gate) * up`, silu as `x / (1 + exp(-x))` (ggml `swiglu`: vector lanes
/// use [`expf_ggml`]; a tail shorter than four lanes uses libm's `expf`).
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    let body = gate.len() - gate.len() % 4;
    let mut e: Vec<f32> = gate.iter().map(|g| -g).collect();
    expf_ggml_all(&mut e[..body]);
    for e in &mut e[body..] {
        *e = e.exp();
    }
    for ((g, u), e) in gate.iter_mut().zip(up).zip(e) {
        *g = *g / (1.0 + e) * u;
    }
}

/// ggml's tanh approximation of GELU: `0.5 x (1 + tanh(√(2/π) x (1 + 0.044715 x²)))`.
pub fn gelu(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const COEF_A: f32 = 0.044_715;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + COEF_A * x * x)).tanh())
}

/// GELU of every f16 value, rounded to f16: ggml's `table_gelu_f16`.
static GELU_F16: std::sync::LazyLock<Box<[f16]>> =
    std::sync::LazyLock::new(|| (0..=u16::MAX).map(|b| f16::from_f32(gelu(f16::from_bits(b).to_f32()))).collect());

/// GeGLU: `gate = gelu(gate) * up`, as ggml's `geglu` on the CPU: the input rounded to f16 and
/// looked up in a table of f16 results, except beyond ±10 where GELU is 0 or the identity.
pub fn gelu_mul(gate: &mut [f32], up: &[f32]) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = if *g <= -10.0 {
            0.0
        } else if *g >= 10.0 {
            *g * u
        } else {
            GELU_F16[f16::from_f32(*g).to_bits() as usize].to_f32() * u
        };
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// [`super::expf_ggml`] in eight lanes: the same constants and unfused operations, both
    /// of its ranges computed and the right one picked per lane.
    #[target_feature(enable = "avx2")]
    fn expf_ggml(x: __m256) -> __m256 {
        let c = |bits: u32| _mm256_set1_ps(f32::from_bits(bits));
        let madd = |a, b, c| _mm256_add_ps(_mm256_mul_ps(a, b), c);
        let nmadd = |a, b, c| _mm256_sub_ps(c, _mm256_mul_ps(a, b));
        let abs = |v| _mm256_andnot_ps(_mm256_set1_ps(-0.0), v);
        let r = c(0x4b40_0000);
        let z = madd(x, c(0x3fb8_aa3b), r);
        let n = _mm256_sub_ps(z, r);
        let b = nmadd(n, c(0x35bf_be8e), nmadd(n, c(0x3f31_7200), x));
        let e = _mm256_slli_epi32::<23>(_mm256_castps_si256(z));
        let k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_set1_epi32(1.0f32.to_bits() as i32)));
        let u = _mm256_mul_ps(b, b);
        let j = madd(
            madd(madd(c(0x3c07_2010), b, c(0x3d2b_9f17)), u, madd(c(0x3e2a_af33), b, c(0x3eff_fedb))),
            u,
            _mm256_mul_ps(c(0x3f7f_fff6), b),
        );
        let normal = madd(j, k, k);
        // Outside ±126 the scale is split in two to reach subnormals and infinity.
        let g = _mm256_and_si256(
            _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LE_OQ>(n, _mm256_setzero_ps())),
            _mm256_set1_epi32(0x8200_0000u32 as i32),
        );
        let s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f00_0000)));
        let s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
        let huge = _mm256_cmp_ps::<_CMP_GT_OQ>(abs(n), _mm256_set1_ps(192.0));
        let far = _mm256_blendv_ps(_mm256_mul_ps(madd(s2, j, s2), s1), _mm256_mul_ps(s1, s1), huge);
        _mm256_blendv_ps(far, normal, _mm256_cmp_ps::<_CMP_LE_OQ>(abs(n), _mm256_set1_ps(126.0)))
    }

    /// [`super::expf_ggml_all`] eight values at a time.
    #[target_feature(enable = "avx2")]
    pub(super) fn expf_ggml_all(v: &mut [f32]) {
        let mut chunks = v.chunks_exact_mut(8);
        for c in chunks.by_ref() {
            let x = bytemuck::cast::<[f32; 8], __m256>(c.try_into().expect("eight values"));
            c.copy_from_slice(&bytemuck::cast::<__m256, [f32; 8]>(expf_ggml(x)));
        }
        for x in chunks.into_remainder() {
            *x = super::expf_ggml(*x);
        }
    }
}

/// `x += y`.
pub fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// Σ a·b over halves, ggml's portable `vec_dot_f16` (attention against an f16 KV cache): each
/// product of two halves is exact in f32, and the sum runs in f64.
pub fn dot_f16(a: &[f16], b: &[f16]) -> f32 {
    a.iter().zip(b).fold(0.0f64, |acc, (x, y)| acc + f64::from(x.to_f32() * y.to_f32())) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_makes_unit_rms_then_scales() {
        let mut x = vec![3.0, 4.0];
        rms_norm(&mut x, &[1.0, 2.0], 0.0);
        // rms = sqrt((9 + 16) / 2)
        let r = (12.5f32).sqrt();
        assert!((x[0] - 3.0 / r).abs() < 1e-6 && (x[1] - 8.0 / r).abs() < 1e-6, "{x:?}");
    }

    #[test]
    fn rope_at_position_zero_is_identity_and_preserves_norm() {
        let orig: Vec<f32> = (0..16).map(|i| i as f32 - 7.5).collect();
        for rope in [rope_norm, rope_neox] {
            let mut x = orig.clone();
            rope(&mut x, 8, 8, 0, 10000.0);
            assert_eq!(x, orig);
            rope(&mut x, 8, 8, 17, 10000.0);
            let n0: f32 = orig.iter().map(|v| v * v).sum();
            let n1: f32 = x.iter().map(|v| v * v).sum();
            assert!((n0 - n1).abs() < 1e-3 * n0, "rotation keeps length");
            assert_ne!(x, orig);
        }
    }

    #[test]
    fn rope_norm_rotates_the_first_pair_by_pos_radians() {
        let mut x = vec![1.0, 0.0, 1.0, 0.0];
        rope_norm(&mut x, 4, 4, 1, 10000.0);
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[1] - 1f32.sin()).abs() < 1e-6, "{x:?}");
        // The second pair turns by 1 * 10000^(-2/4) = 0.01 rad.
        assert!((x[3] - 0.01f32.sin()).abs() < 1e-6, "{x:?}");
    }

    #[test]
    fn softmax_sums_to_one_and_survives_large_values() {
        let mut x = vec![1000.0, 1000.0, f32::NEG_INFINITY];
        softmax(&mut x);
        assert_eq!(x, vec![0.5, 0.5, 0.0]);
    }

    #[test]
    fn expf_ggml_is_close_to_exp_and_handles_the_extremes() {
        // Normal results only: below exp(-87) both lose precision to subnormals.
        for i in -1740..1760 {
            let x = i as f32 * 0.05;
            let (got, want) = (expf_ggml(x), x.exp());
            assert!((got - want).abs() <= 4.0 * f32::EPSILON * want, "exp({x}) = {got}, libm {want}");
        }
        assert_eq!(expf_ggml(0.0), 1.0);
        assert_eq!(expf_ggml(f32::NEG_INFINITY), 0.0);
        assert_eq!(expf_ggml(-200.0), 0.0);
        assert!(expf_ggml(100.0).is_infinite());
    }

    #[test]
    fn gelu_mul_is_ggmls_table_lookup() {
        let mut g = vec![-11.0, 0.0, 1.0, 12.0, -0.5];
        gelu_mul(&mut g, &[2.0, 2.0, 2.0, 2.0, 1.0]);
        assert_eq!(g[0], 0.0);
        assert_eq!(g[1], 0.0);
        // GELU(1) = 0.8412 (tanh form), within f16 rounding.
        assert!((g[2] - 2.0 * 0.841_192).abs() < 2.0 * 1e-3, "{}", g[2]);
        assert_eq!(g[3], 24.0);
        assert!((g[4] + 0.154_286).abs() < 1e-3, "{}", g[4]);
    }

    #[test]
    fn silu_mul_matches_definition() {
        let mut g = vec![0.0, 2.0];
        silu_mul(&mut g, &[5.0, 3.0]);
        assert_eq!(g[0], 0.0);
        assert!((g[1] - 2.0 / (1.0 + (-2.0f32).exp()) * 3.0).abs() < 1e-6);
    }

    #[test]
    fn vectorised_exp_softmax_and_silu_match_the_scalar_formulas() {
        // exp over its whole range: ±126 and ±192 boundaries, subnormal results, overflow, NaN.
        let mut x: Vec<f32> = (-4200..4200).map(|i| i as f32 * 0.0513).collect();
        x.extend([-126.0, 126.0, -192.0, 192.0, -87.5, 88.8, -103.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN]);
        let want: Vec<f32> = x.iter().map(|&v| expf_ggml(v)).collect();
        let mut got = x.clone();
        expf_ggml_all(&mut got);
        for ((g, w), v) in got.iter().zip(&want).zip(&x) {
            assert!(g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()), "exp({v}): {g} vs {w}");
        }

        // The formulas as first written, one value at a time.
        let softmax_scalar = |x: &mut [f32]| {
            let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f64;
            for group in x.chunks_mut(4) {
                let mut v = [0.0f32; 4];
                for (slot, x) in v.iter_mut().zip(group.iter_mut()) {
                    *x = expf_ggml(*x - max);
                    *slot = *x;
                }
                sum += f64::from((v[0] + v[1]) + (v[2] + v[3]));
            }
            let inv = (1.0 / sum) as f32;
            x.iter_mut().for_each(|v| *v *= inv);
        };
        for len in [1, 3, 8, 13, 133] {
            let scores: Vec<f32> = (0..len).map(|i| ((i * 37 % 23) as f32 - 11.0) * 1.7).collect();
            let (mut a, mut b) = (scores.clone(), scores);
            softmax(&mut a);
            softmax_scalar(&mut b);
            assert_eq!(
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
        for len in [4, 7, 1536, 1539] {
            let gate: Vec<f32> = (0..len).map(|i| ((i * 53 % 41) as f32 - 20.0) * 0.37).collect();
            let up: Vec<f32> = (0..len).map(|i| ((i * 31 % 17) as f32 - 8.0) * 0.5).collect();
            let mut a = gate.clone();
            silu_mul(&mut a, &up);
            let body = len - len % 4;
            for (i, ((g, u), a)) in gate.iter().zip(&up).zip(&a).enumerate() {
                let e = if i < body { expf_ggml(-g) } else { (-g).exp() };
                assert_eq!(a.to_bits(), (g / (1.0 + e) * u).to_bits(), "silu lane {i} of {len}");
            }
        }
    }
}
