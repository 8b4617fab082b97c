//! Q5_0, Q5_1, Q4_K, Q5_K and Q6_K as what they all are underneath: runs of 16 values
//! `x = d·q + m`, each with small integer codes `q` (−32..=63) and its own f32 scale `d` and
//! offset `m`. The GPU kernels read this form (repacked at upload: one byte per code and two
//! f32 per run), so one shader path serves the five formats.
//!
//! `d·q + m` is the CPU's dequantisation operation for operation: `d·(q − 16)` (Q5_0) and
//! `d·sc·(q − 32)` (Q6_K) are `d'·q'` with the offset folded into a signed code and `m = −0`
//! (adding −0 changes nothing, not even the sign of a zero);
//! Q5_1 is `d·q + m`; the K-quants' `d·sc·q − dmin·mn` is `d'·q + (−dmin·mn)`, the same
//! rounding as a subtraction.

use crate::KernelError;
use crate::quant::{BlockQ4K, BlockQ5_0, BlockQ5_1, BlockQ5K, BlockQ6K, QuantFormat, blocks, half, scale_min_k4};

/// 16 consecutive values `d · q[i] + m`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AffineRun {
    pub q: [i8; 16],
    pub d: f32,
    pub m: f32,
}

/// Values per run.
pub const RUN: usize = 16;

/// Whether `format` decomposes into [`AffineRun`]s.
pub fn is_affine(format: QuantFormat) -> bool {
    matches!(format, QuantFormat::Q5_0 | QuantFormat::Q5_1 | QuantFormat::Q4_K | QuantFormat::Q5_K | QuantFormat::Q6_K)
}

/// Appends the runs of `bytes` (whole blocks of `format`) to `out`, in value order.
pub fn affine_runs(format: QuantFormat, bytes: &[u8], out: &mut Vec<AffineRun>) -> Result<(), KernelError> {
    if !is_affine(format) {
        return Err(KernelError::UnsupportedFormat(format));
    }
    let block_bytes = format.block_bytes();
    if !bytes.len().is_multiple_of(block_bytes) {
        return Err(KernelError::RaggedBlocks { bytes: bytes.len(), block: block_bytes });
    }
    let mut run = |codes: &[i32], d: f32, m: f32| {
        let mut q = [0i8; RUN];
        for (q, &c) in q.iter_mut().zip(codes) {
            // Codes are −32..=63 by construction of every format here.
            *q = c as i8;
        }
        out.push(AffineRun { q, d, m });
    };
    match format {
        QuantFormat::Q5_0 | QuantFormat::Q5_1 => {
            let offset = if format == QuantFormat::Q5_0 { 16 } else { 0 };
            for chunk in bytes.chunks_exact(block_bytes) {
                let (d, m, qh, qs) = if format == QuantFormat::Q5_0 {
                    let b: &BlockQ5_0 = bytemuck::from_bytes(chunk);
                    (half(b.d), -0.0, u32::from_le_bytes(b.qh), b.qs)
                } else {
                    let b: &BlockQ5_1 = bytemuck::from_bytes(chunk);
                    (half(b.d), half(b.m), u32::from_le_bytes(b.qh), b.qs)
                };
                let mut codes = [0i32; 32];
                for (j, &q) in qs.iter().enumerate() {
                    codes[j] = (i32::from(q & 0x0f) | (((qh >> j) & 1) << 4) as i32) - offset;
                    codes[j + 16] = (i32::from(q >> 4) | (((qh >> (j + 16)) & 1) << 4) as i32) - offset;
                }
                run(&codes[..16], d, m);
                run(&codes[16..], d, m);
            }
        }
        QuantFormat::Q4_K | QuantFormat::Q5_K => {
            let five = format == QuantFormat::Q5_K;
            for chunk in bytes.chunks_exact(block_bytes) {
                let (d, dmin, scales, qh, qs) = if five {
                    let b: &BlockQ5K = bytemuck::from_bytes(chunk);
                    (half(b.d), half(b.dmin), b.scales, Some(b.qh), b.qs)
                } else {
                    let b: &BlockQ4K = bytemuck::from_bytes(chunk);
                    (half(b.d), half(b.dmin), b.scales, None, b.qs)
                };
                // Each 64 values: two sub-blocks of 32 sharing 32 bytes of nibbles.
                for (g, q) in qs.chunks_exact(32).enumerate() {
                    for (sub, shift) in [(2 * g, 0), (2 * g + 1, 4)] {
                        let (sc, mn) = scale_min_k4(sub, &scales);
                        let (d_sub, m_sub) = (d * sc, -(dmin * mn));
                        let mut codes = [0i32; 32];
                        for (l, &byte) in q.iter().enumerate() {
                            let high = qh.map_or(0, |qh| i32::from((qh[l] >> sub) & 1) << 4);
                            codes[l] = i32::from((byte >> shift) & 0x0f) | high;
                        }
                        run(&codes[..16], d_sub, m_sub);
                        run(&codes[16..], d_sub, m_sub);
                    }
                }
            }
        }
        QuantFormat::Q6_K => {
            for b in blocks::<BlockQ6K>(bytes)? {
                let d = half(b.d);
                for h in 0..2 {
                    let (ql, qh, sc) = (&b.ql[64 * h..][..64], &b.qh[32 * h..][..32], &b.scales[8 * h..][..8]);
                    // Four quarters of 32 values: low nibbles of ql[0..32], of ql[32..64], then
                    // the high nibbles of each; two bits each from qh.
                    for quarter in 0..4 {
                        let mut codes = [0i32; 32];
                        for l in 0..32 {
                            let low =
                                if quarter < 2 { ql[l + 32 * quarter] & 0x0f } else { ql[l + 32 * (quarter - 2)] >> 4 };
                            let high = (qh[l] >> (2 * quarter)) & 3;
                            codes[l] = i32::from(low | (high << 4)) - 32;
                        }
                        run(&codes[..16], d * f32::from(sc[2 * quarter]), -0.0);
                        run(&codes[16..], d * f32::from(sc[2 * quarter + 1]), -0.0);
                    }
                }
            }
        }
        other => return Err(KernelError::UnsupportedFormat(other)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::dequantize;

    /// Deterministic bytes (splitmix64), with each block's f16 fields set to sane scales.
    fn random_blocks(format: QuantFormat, n_blocks: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        let mut next = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let mut bytes: Vec<u8> = (0..n_blocks * format.block_bytes()).map(|_| next() as u8).collect();
        let scale = crate::quant::half_bits;
        for (i, block) in bytes.chunks_exact_mut(format.block_bytes()).enumerate() {
            let d = scale(0.01 + 0.001 * i as f32);
            let m = scale(-0.02 + 0.003 * i as f32);
            match format {
                QuantFormat::Q6_K => block[208..210].copy_from_slice(&d),
                _ => {
                    block[0..2].copy_from_slice(&d);
                    if format != QuantFormat::Q5_0 {
                        block[2..4].copy_from_slice(&m);
                    }
                }
            }
        }
        bytes
    }

    #[test]
    fn runs_reproduce_the_dequantisation_bit_for_bit() {
        for format in [QuantFormat::Q5_0, QuantFormat::Q5_1, QuantFormat::Q4_K, QuantFormat::Q5_K, QuantFormat::Q6_K] {
            assert!(is_affine(format));
            let n_blocks = 5;
            let bytes = random_blocks(format, n_blocks, 7);
            let mut want = vec![0.0; n_blocks * format.block_size()];
            dequantize(format, &bytes, &mut want).unwrap();
            let mut runs = Vec::new();
            affine_runs(format, &bytes, &mut runs).unwrap();
            assert_eq!(runs.len() * RUN, want.len(), "{format}");
            let got: Vec<f32> = runs.iter().flat_map(|r| r.q.map(|q| r.d * f32::from(q) + r.m)).collect();
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.to_bits(), w.to_bits(), "{format} value {i}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn other_formats_and_ragged_bytes_are_errors() {
        assert!(!is_affine(QuantFormat::Q8_0));
        assert!(affine_runs(QuantFormat::Q8_0, &[0; 34], &mut Vec::new()).is_err());
        assert!(affine_runs(QuantFormat::Q4_K, &[0; 145], &mut Vec::new()).is_err());
        assert!(affine_runs(QuantFormat::Q6_K, &[0; 209], &mut Vec::new()).is_err());
    }
}
