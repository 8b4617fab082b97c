//! Rough timing of the quantised matvec (not a test): `cargo bench -p hearth-kernels`.
//! Prints the fastest and the median call, since the machine may be busy with other work;
//! `RAYON_NUM_THREADS=1` times one core.
use std::time::Instant;

use hearth_kernels::cpu::{Activations, RowLayout, interleave_rows, matmul_quant_layout};
use hearth_kernels::quant::{QuantFormat, quantize_q8_0};

fn main() {
    // SmolLM2-135M's shapes: attention's k/v, the MLP's gate/up, and the output head.
    for (rows, cols) in [(192, 576), (1536, 576), (49152, 576)] {
        let w: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919 % 2001) as f32 - 1000.0) / 500.0).collect();
        let x: Vec<f32> = (0..cols).map(|i| ((i * 104729 % 997) as f32 - 498.0) / 300.0).collect();
        let q8 = quantize_q8_0(&w).unwrap();
        // Timing does not depend on the values: any bytes of the right length will do for Q4_x.
        let q4: Vec<u8> = (0..rows * cols / 32 * 20).map(|i| (i * 31 % 251) as u8 & 0x3b).collect();
        for format in [QuantFormat::Q8_0, QuantFormat::Q4_1, QuantFormat::Q4_0] {
            let plain: Vec<u8> = match format {
                QuantFormat::Q8_0 => bytemuck::cast_slice(&q8).to_vec(),
                QuantFormat::Q4_1 => q4.clone(),
                _ => q4[..rows * cols / 32 * 18].to_vec(),
            };
            let mut interleaved = plain.clone();
            let layout = interleave_rows(format, &mut interleaved, rows, cols).unwrap();
            let act = Activations::for_weights(format, &x).unwrap();
            for (name, layout, bytes) in [("plain", RowLayout::Plain, &plain), ("best", layout, &interleaved)] {
                let iters = (200 * 1536 / rows).clamp(20, 1000);
                let mut times: Vec<f64> = (0..iters)
                    .map(|_| {
                        let start = Instant::now();
                        let y = matmul_quant_layout(format, layout, bytes, rows, cols, std::slice::from_ref(&act));
                        std::hint::black_box(y.unwrap());
                        start.elapsed().as_secs_f64()
                    })
                    .collect();
                times.sort_by(f64::total_cmp);
                let (best, median) = (times[0], times[iters / 2]);
                let gmacs = (rows * cols) as f64 / best / 1e9;
                println!(
                    "{format} {rows}x{cols} {name} ({layout:?}): best {:.1} us ({gmacs:.2} GMAC/s), median {:.1} us",
                    best * 1e6,
                    median * 1e6
                );
            }
        }
    }
}
