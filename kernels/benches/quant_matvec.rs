//! Rough timing of the quantised matvec (not a test): `cargo bench -p hearth-kernels`.
use std::time::Instant;

use hearth_kernels::cpu::{Activations, matvec_quant};
use hearth_kernels::quant::{QuantFormat, quantize_q8_0};

fn main() {
    let (rows, cols) = (1536, 576);
    let w: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919 % 2001) as f32 - 1000.0) / 500.0).collect();
    let x: Vec<f32> = (0..cols).map(|i| ((i * 104729 % 997) as f32 - 498.0) / 300.0).collect();
    let q8 = quantize_q8_0(&w).unwrap();
    // Timing does not depend on the values: any bytes of the right length will do for Q4_x.
    let q4: Vec<u8> = (0..rows * cols / 32 * 20).map(|i| (i * 31 % 251) as u8 & 0x3b).collect();
    for format in [QuantFormat::Q8_0, QuantFormat::Q4_1, QuantFormat::Q4_0] {
        let bytes: &[u8] = match format {
            QuantFormat::Q8_0 => bytemuck::cast_slice(&q8),
            QuantFormat::Q4_1 => &q4,
            _ => &q4[..rows * cols / 32 * 18],
        };
        let act = Activations::for_weights(format, &x).unwrap();
        let iters = 200;
        let start = Instant::now();
        for _ in 0..iters {
            std::hint::black_box(matvec_quant(format, bytes, rows, cols, &act).unwrap());
        }
        let per = start.elapsed().as_secs_f64() / iters as f64;
        println!("{format} {rows}x{cols}: {:.1} us, {:.2} GMAC/s", per * 1e6, (rows * cols) as f64 / per / 1e9);
    }
}
