//! Activations quantised to Q8_0 / Q8_1 for the integer dot products, vectorised where the CPU
//! can: each block gives the bits of llama.cpp's portable reference ([`crate::quant`]), which
//! the tests below check.

use crate::KernelError;
use crate::quant::{BlockQ8_0, BlockQ8_1, quantize_q8_0_by, quantize_q8_1_by};

/// [`crate::quant::quantize_q8_0`], fast.
pub(crate) fn q8_0(x: &[f32]) -> Result<Vec<BlockQ8_0>, KernelError> {
    #[cfg(target_arch = "x86_64")]
    if super::SimdLevel::detected().has_avx2() {
        // SAFETY: the CPU has AVX2 and F16C, checked just above.
        return quantize_q8_0_by(x, |block| unsafe { super::quant_avx2::quantize_block(block) });
    }
    quantize_q8_0_by(x, crate::quant::quantize_block_q8)
}

/// [`crate::quant::quantize_q8_1`], fast.
pub(crate) fn q8_1(x: &[f32]) -> Result<Vec<BlockQ8_1>, KernelError> {
    #[cfg(target_arch = "x86_64")]
    if super::SimdLevel::detected().has_avx2() {
        // SAFETY: as in `q8_0`.
        return quantize_q8_1_by(x, |block| unsafe { super::quant_avx2::quantize_block(block) });
    }
    quantize_q8_1_by(x, crate::quant::quantize_block_q8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{quantize_q8_0, quantize_q8_1};

    #[test]
    fn vectorised_quantization_rounds_as_the_reference() {
        // Blocks with max|x| = 127 (so d = 1 and v * id = v): halves that must round away from
        // zero, values just either side of them, and random values at several scales.
        let mut x: Vec<f32> = vec![127.0];
        for k in -60..60 {
            let v = k as f32 + 0.5;
            x.extend([v, f32::from_bits(v.to_bits() - 1), f32::from_bits(v.to_bits() + 1)]);
        }
        x.resize(x.len().next_multiple_of(32), 0.0);
        // A NaN among ordinary values, and an infinity (d = inf, so every q is 0 or NaN → 0).
        x.extend((0..32).map(|i| if i == 5 { f32::NAN } else { i as f32 - 3.3 }));
        x.extend((0..32).map(|i| if i == 9 { f32::NEG_INFINITY } else { i as f32 }));
        let mut seed = 0x1234_5678_9abc_def1u64;
        for scale in [1e-30f32, 1e-3, 1.0, 7.7, 1e4, 1e30] {
            for _ in 0..256 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                x.push(((seed % 200_001) as f32 - 100_000.0) / 100_000.0 * scale);
            }
        }
        let (fast, reference) = (q8_1(&x).unwrap(), quantize_q8_1(&x).unwrap());
        for (i, (g, r)) in fast.iter().zip(&reference).enumerate() {
            assert_eq!(bytemuck::bytes_of(g), bytemuck::bytes_of(r), "block {i}");
        }
        let (fast, reference) = (q8_0(&x).unwrap(), quantize_q8_0(&x).unwrap());
        assert_eq!(bytemuck::cast_slice::<_, u8>(&fast), bytemuck::cast_slice::<_, u8>(&reference));
    }

    #[test]
    fn a_length_that_is_not_whole_blocks_is_an_error() {
        assert!(matches!(q8_0(&[0.0; 33]), Err(KernelError::RaggedBlocks { bytes: 33, block: 32 })));
        assert!(matches!(q8_1(&[0.0; 31]), Err(KernelError::RaggedBlocks { bytes: 31, block: 32 })));
    }
}
