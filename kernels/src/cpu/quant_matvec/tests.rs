use super::*;
use crate::cpu::matvec_reference;
use crate::quant::{dequantize, quantize_q8_0};

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n).map(|i| (((i * 7919 + seed * 104729) % 2003) as f32 - 1001.0) / 400.0).collect()
}

/// Quantises `w` rows to `format` (through its own reference, so only the dot is tested).
fn encode(format: QuantFormat, w: &[f32]) -> Vec<u8> {
    match format {
        QuantFormat::F32 => w.iter().flat_map(|v| v.to_le_bytes()).collect(),
        QuantFormat::F16 => w.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect(),
        QuantFormat::Q8_0 => bytemuck::cast_slice(&quantize_q8_0(w).unwrap()).to_vec(),
        QuantFormat::Q4_0 => {
            let q8 = quantize_q8_0(w).unwrap();
            q8.iter()
                .flat_map(|b| {
                    let mut qs = [0u8; 16];
                    for j in 0..16 {
                        let lo = ((b.qs[j] as i32 >> 4) + 8).clamp(0, 15) as u8;
                        let hi = ((b.qs[j + 16] as i32 >> 4) + 8).clamp(0, 15) as u8;
                        qs[j] = lo | (hi << 4);
                    }
                    let d = f16::from_le_bytes(b.d).to_f32() * 16.0;
                    bytemuck::bytes_of(&BlockQ4_0 { d: f16::from_f32(d).to_le_bytes(), qs }).to_vec()
                })
                .collect()
        }
        QuantFormat::Q4_1 => w
            .chunks(32)
            .flat_map(|c| {
                let (lo, hi) = c.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
                let d = (hi - lo) / 15.0;
                let mut qs = [0u8; 16];
                for j in 0..16 {
                    let q = |v: f32| (((v - lo) / d).round() as i32).clamp(0, 15) as u8;
                    qs[j] = q(c[j]) | (q(c[j + 16]) << 4);
                }
                let block = BlockQ4_1 { d: f16::from_f32(d).to_le_bytes(), m: f16::from_f32(lo).to_le_bytes(), qs };
                bytemuck::bytes_of(&block).to_vec()
            })
            .collect(),
        other => panic!("no encoder for {other}"),
    }
}

/// The activations as the dot products see them, back in f32.
fn seen(act: &Activations) -> Vec<f32> {
    let dequantized = |format: QuantFormat, bytes: &[u8], n: usize| {
        let mut out = vec![0.0; n];
        dequantize(format, bytes, &mut out).unwrap();
        out
    };
    match act {
        Activations::F32(v) => v.clone(),
        Activations::F16(v) => v.iter().map(|h| h.to_f32()).collect(),
        Activations::BF16(v) => v.iter().map(|&b| crate::quant::bf16_to_f32(b)).collect(),
        Activations::Q8_0(b) => dequantized(QuantFormat::Q8_0, bytemuck::cast_slice(b), b.len() * 32),
        Activations::Q8_1(b) => {
            b.iter().flat_map(|b| b.qs.map(|q| q as f32 * f16::from_le_bytes(b.d).to_f32())).collect()
        }
        Activations::Q8_K(b) => dequantized(QuantFormat::Q8_K, bytemuck::cast_slice(b), b.len() * 256),
    }
}

#[test]
fn every_format_matches_dequantized_reference() {
    let (rows, cols) = (37, 256);
    let w = values(rows * cols, 1);
    let x = values(cols, 2);
    for format in [QuantFormat::F32, QuantFormat::F16, QuantFormat::Q8_0, QuantFormat::Q4_0, QuantFormat::Q4_1] {
        let bytes = encode(format, &w);
        let mut wd = vec![0.0; rows * cols];
        dequantize(format, &bytes, &mut wd).unwrap();
        // Reference: dequantised weights times the activations as the dot product sees them.
        let act = Activations::for_weights(format, &x).unwrap();
        let xd = seen(&act);
        let want = matvec_reference(&wd, &xd, rows, cols).unwrap();
        let got = matvec_quant(format, &bytes, rows, cols, &act).unwrap();
        for (r, (g, e)) in got.iter().zip(&want).enumerate() {
            // Q4_1 folds m through the f16 block sum s, so allow for its rounding.
            let tol = 2e-3 * e.abs().max(1.0) + if format == QuantFormat::Q4_1 { 0.05 } else { 0.0 };
            assert!((g - e).abs() <= tol, "{format} row {r}: {g} vs {e}");
        }
        // And against the exact f32 product: quantisation error stays small.
        let exact = matvec_reference(&w, &x, rows, cols).unwrap();
        let scale = exact.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let worst = got.iter().zip(&exact).map(|(g, e)| (g - e).abs()).fold(0.0, f32::max);
        assert!(worst <= 0.1 * scale, "{format}: worst {worst}, scale {scale}");
    }
}

#[test]
fn matmul_equals_one_matvec_per_vector() {
    let (rows, cols) = (19, 64);
    let bytes = encode(QuantFormat::Q4_1, &values(rows * cols, 3));
    let xs: Vec<Activations> =
        (0..5).map(|t| Activations::for_weights(QuantFormat::Q4_1, &values(cols, 10 + t)).unwrap()).collect();
    let batch = matmul_quant(QuantFormat::Q4_1, &bytes, rows, cols, &xs).unwrap();
    for (t, x) in xs.iter().enumerate() {
        let one = matvec_quant(QuantFormat::Q4_1, &bytes, rows, cols, x).unwrap();
        assert_eq!(&batch[t * rows..(t + 1) * rows], one.as_slice(), "vector {t}");
    }
}

/// xorshift64: reproducible bytes without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        std::array::from_fn(|_| self.next() as u8)
    }

    /// A scale as f16 bytes: either sign, magnitudes from subnormal to large, some zeros.
    fn scale(&mut self) -> [u8; 2] {
        let r = self.next();
        let v = if r.is_multiple_of(17) {
            0.0
        } else {
            ((r >> 8) % 1000) as f32 / 997.0 * 2f32.powi(((r >> 32) % 40) as i32 - 26)
        };
        f16::from_f32(if r & 1 == 0 { v } else { -v }).to_le_bytes()
    }

    /// A quantised activation byte: within ±127, as the Q8 quantisers produce.
    fn q8(&mut self) -> i8 {
        (self.next() % 255) as i8 - 127
    }

    /// Uniform in [lo, hi).
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }

    /// A block scale as f16 bytes as quantisers make them: magnitude log-uniform in
    /// [1e-3, 1e-1), negative half the time if `signed`.
    fn sane_scale(&mut self, signed: bool) -> [u8; 2] {
        let v = 10f32.powf(self.uniform(-3.0, -1.0));
        let negative = signed && self.next() & 1 == 1;
        f16::from_f32(if negative { -v } else { v }).to_le_bytes()
    }
}

/// Blocks of `format` with arbitrary bits (weights need not come from our quantiser).
fn random_weights(format: QuantFormat, blocks: usize, rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..blocks {
        match format {
            QuantFormat::Q4_0 => out.extend(bytemuck::bytes_of(&BlockQ4_0 { d: rng.scale(), qs: rng.bytes() })),
            QuantFormat::Q4_1 => {
                out.extend(bytemuck::bytes_of(&BlockQ4_1 { d: rng.scale(), m: rng.scale(), qs: rng.bytes() }))
            }
            QuantFormat::Q8_0 => {
                out.extend(bytemuck::bytes_of(&BlockQ8_0 { d: rng.scale(), qs: rng.bytes::<32>().map(|b| b as i8) }))
            }
            // The formats below get scales in a sane range (their kernels are checked
            // against f64 references, which arbitrary f16 scales would take to inf).
            QuantFormat::Q5_0 => {
                out.extend(bytemuck::bytes_of(&BlockQ5_0 { d: rng.sane_scale(true), qh: rng.bytes(), qs: rng.bytes() }))
            }
            QuantFormat::Q5_1 => out.extend(bytemuck::bytes_of(&BlockQ5_1 {
                d: rng.sane_scale(true),
                m: rng.sane_scale(true),
                qh: rng.bytes(),
                qs: rng.bytes(),
            })),
            QuantFormat::Q4_K => out.extend(bytemuck::bytes_of(&BlockQ4K {
                d: rng.sane_scale(false),
                dmin: rng.sane_scale(false),
                scales: rng.bytes(),
                qs: rng.bytes(),
            })),
            QuantFormat::Q5_K => out.extend(bytemuck::bytes_of(&BlockQ5K {
                d: rng.sane_scale(false),
                dmin: rng.sane_scale(false),
                scales: rng.bytes(),
                qh: rng.bytes(),
                qs: rng.bytes(),
            })),
            QuantFormat::Q6_K => out.extend(bytemuck::bytes_of(&BlockQ6K {
                ql: rng.bytes(),
                qh: rng.bytes(),
                scales: rng.bytes::<16>().map(|b| b as i8),
                d: rng.sane_scale(false),
            })),
            QuantFormat::BF16 => out.extend(crate::quant::f32_to_bf16(rng.uniform(-1.0, 1.0)).to_le_bytes()),
            other => panic!("no random blocks for {other}"),
        }
    }
    out
}

fn random_activations(format: QuantFormat, blocks: usize, rng: &mut Rng) -> Activations {
    match format.vec_dot_format() {
        QuantFormat::Q8_0 => Activations::Q8_0(
            (0..blocks).map(|_| BlockQ8_0 { d: rng.scale(), qs: std::array::from_fn(|_| rng.q8()) }).collect(),
        ),
        QuantFormat::Q8_1 => Activations::Q8_1(
            (0..blocks)
                .map(|_| BlockQ8_1 { d: rng.scale(), s: rng.scale(), qs: std::array::from_fn(|_| rng.q8()) })
                .collect(),
        ),
        other => panic!("no random activations for {other}"),
    }
}

#[test]
fn simd_rows_are_bit_identical_to_the_portable_dot() {
    // Row counts with and without a partial group or pair of groups of SIMD rows; several
    // vectors (prefill), a whole tile of tokens and some left over. Every kernel level this
    // CPU has runs, not only the best.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for format in [QuantFormat::Q4_0, QuantFormat::Q4_1, QuantFormat::Q8_0] {
        for (rows, blocks) in [(8, 1), (29, 7), (64, 18), (5, 3), (40, 2)] {
            let cols = blocks * 32;
            let w = random_weights(format, rows * blocks, &mut rng);
            let xs: Vec<Activations> = (0..6).map(|_| random_activations(format, blocks, &mut rng)).collect();
            let mut interleaved = w.clone();
            crate::cpu::interleave::interleave_rows_always(format, &mut interleaved, rows, cols).unwrap();
            let row_bytes = w.len() / rows;
            // The portable loop over interleaved rows, as a CPU without the SIMD kernels runs it.
            let mut portable = vec![0.0; rows * xs.len()];
            let rows_of = RowsOf { format, layout: RowLayout::Interleaved, row_bytes };
            rows_portable_any(rows_of, &interleaved, &xs, &mut portable).unwrap();
            let portable: Vec<f32> = (0..rows * xs.len()).map(|i| portable[i % rows * xs.len() + i / rows]).collect();
            let mut runs = vec![("interleaved, portable".to_string(), portable)];
            for level in SimdLevel::available() {
                for (layout, data) in [(RowLayout::Plain, &w), (RowLayout::Interleaved, &interleaved)] {
                    let mut by_row = vec![0.0; rows * xs.len()];
                    for (out, w_block) in
                        by_row.chunks_mut(ROWS_PER_TASK * xs.len()).zip(data.chunks(ROWS_PER_TASK * row_bytes))
                    {
                        dot_rows_at(level, RowsOf { format, layout, row_bytes }, w_block, &xs, out).unwrap();
                    }
                    runs.push((format!("{level} {layout:?}"), by_vector(by_row, rows, xs.len())));
                }
            }
            runs.push(("matmul_quant".into(), matmul_quant(format, &w, rows, cols, &xs).unwrap()));
            for (layout, got) in runs {
                for (t, x) in xs.iter().enumerate() {
                    for (r, row) in w.chunks_exact(row_bytes).enumerate() {
                        let want = dot_row(format, row, x).unwrap();
                        let g = got[t * rows + r];
                        let at = format!("{format} {layout} {rows}x{cols} vector {t} row {r}");
                        assert_eq!(g.to_bits(), want.to_bits(), "{at}: {g} vs {want}");
                    }
                }
            }
        }
    }
}

#[test]
fn many_matrices_equal_one_at_a_time() {
    let cols = 64;
    let xs: Vec<Activations> =
        (0..2).map(|t| Activations::for_weights(QuantFormat::Q4_1, &values(cols, 20 + t)).unwrap()).collect();
    let data: Vec<Vec<u8>> =
        [40, 8, 3].iter().map(|&rows| encode(QuantFormat::Q4_1, &values(rows * cols, rows))).collect();
    let mats: Vec<QuantWeights> = data
        .iter()
        .map(|d| QuantWeights {
            format: QuantFormat::Q4_1,
            layout: RowLayout::Plain,
            data: d,
            rows: d.len() / 40,
            cols,
        })
        .collect();
    let many = matmul_quant_many(&mats, &xs).unwrap();
    for (m, got) in mats.iter().zip(&many) {
        assert_eq!(got, &matmul_quant(m.format, m.data, m.rows, cols, &xs).unwrap(), "{} rows", m.rows);
    }
    let short = QuantWeights { rows: 2, ..mats[0] };
    assert!(matmul_quant_many(&[mats[1], short], &xs).is_err(), "every matrix is checked");
}

#[test]
fn shapes_are_checked() {
    let act = Activations::for_weights(QuantFormat::Q4_0, &[0.0; 64]).unwrap();
    assert!(matvec_quant(QuantFormat::Q4_0, &[0; 36], 2, 64, &act).is_err(), "2 rows need 72 bytes");
    assert!(matvec_quant(QuantFormat::Q4_0, &[0; 36], 1, 33, &act).is_err(), "33 is not whole blocks");
    assert!(matvec_quant(QuantFormat::Q4_0, &[0; 72], 2, 64, &act).is_ok());
    let act = Activations::for_weights(QuantFormat::Q4_0, &[0.0; 32]).unwrap();
    assert!(matvec_quant(QuantFormat::Q4_0, &[0; 72], 2, 64, &act).is_err(), "x too short");
    assert!(Activations::for_weights(QuantFormat::Q2_K, &[0.0; 256]).is_err());
}

const NEW_FORMATS: [QuantFormat; 6] =
    [QuantFormat::Q5_0, QuantFormat::Q5_1, QuantFormat::Q4_K, QuantFormat::Q5_K, QuantFormat::Q6_K, QuantFormat::BF16];

fn dot64(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum()
}

/// Σ |a| |b|: the scale a dot product's rounding is relative to.
fn magnitude(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&a, &b)| f64::from(a).abs() * f64::from(b).abs()).sum()
}

#[test]
fn new_formats_match_dequantized_reference() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    // Five rows (no whole SIMD group), two 256-value super-blocks, two vectors (prefill).
    let (rows, cols) = (5, 512);
    for format in NEW_FORMATS {
        let w = random_weights(format, rows * cols / format.block_size(), &mut rng);
        let mut wd = vec![0.0f32; rows * cols];
        dequantize(format, &w, &mut wd).unwrap();
        let xs: Vec<Vec<f32>> = (0..2).map(|_| (0..cols).map(|_| rng.uniform(-3.0, 3.0)).collect()).collect();
        let acts: Vec<Activations> = xs.iter().map(|x| Activations::for_weights(format, x).unwrap()).collect();
        let got = matmul_quant(format, &w, rows, cols, &acts).unwrap();
        for (t, (x, act)) in xs.iter().zip(&acts).enumerate() {
            let one = matvec_quant(format, &w, rows, cols, act).unwrap();
            assert_eq!(one, got[t * rows..(t + 1) * rows], "{format} vector {t}: matvec is matmul's column");
            let xq = seen(act);
            for (r, wr) in wd.chunks_exact(cols).enumerate() {
                let g = f64::from(got[t * rows + r]);
                // Against the activations as the kernel sees them: f32 rounding only (some
                // 1e-8 of the scale), but for Q5_1 the f16 block sums s that carry m (2^-11).
                let (want, scale) = (dot64(wr, &xq), magnitude(wr, &xq));
                let tol = if format == QuantFormat::Q5_1 { 1e-3 } else { 1e-5 };
                let at = format!("{format} vector {t} row {r}");
                assert!((g - want).abs() <= tol * scale, "{at}: {g} vs {want} (scale {scale})");
                // Against the f32 activations: their quantisation error too (BF16 8 bits, Q8
                // ±127 per block; some 6e-4 of the scale here).
                let (exact, scale) = (dot64(wr, x), magnitude(wr, x));
                assert!((g - exact).abs() <= 5e-3 * scale, "{at}: {g} vs exact {exact} (scale {scale})");
            }
        }
    }
}

/// llama.cpp's `_generic` dot products transcribed statement by statement (its `aux8`,
/// `aux16`, `aux32`, `utmp` and masks), to hold the vectorisable kernels to its float steps.
fn llama_cpp_generic(format: QuantFormat, row: &[u8], act: &Activations) -> f32 {
    let h = |b: [u8; 2]| f16::from_le_bytes(b).to_f32();
    match (format, act) {
        (QuantFormat::Q5_0, Activations::Q8_0(y)) => {
            let mut sumf = 0.0f32;
            for (x, y) in blocks::<BlockQ5_0>(row).unwrap().iter().zip(y) {
                let qh = u32::from_le_bytes(x.qh);
                let (mut sumi0, mut sumi1) = (0i32, 0i32);
                for j in 0..16 {
                    let xh_0 = (((qh & (1 << j)) >> j) << 4) as u8;
                    let xh_1 = ((qh & (1 << (j + 16))) >> (j + 12)) as u8;
                    let x0 = (((x.qs[j] & 0x0f) | xh_0) as i32 - 16) as i8 as i32;
                    let x1 = (((x.qs[j] >> 4) | xh_1) as i32 - 16) as i8 as i32;
                    sumi0 += x0 * y.qs[j] as i32;
                    sumi1 += x1 * y.qs[j + 16] as i32;
                }
                let sumi = sumi0 + sumi1;
                sumf += (h(x.d) * h(y.d)) * sumi as f32;
            }
            sumf
        }
        (QuantFormat::Q5_1, Activations::Q8_1(y)) => {
            let mut sumf = 0.0f32;
            for (x, y) in blocks::<BlockQ5_1>(row).unwrap().iter().zip(y) {
                let qh = u32::from_le_bytes(x.qh);
                let (mut sumi0, mut sumi1) = (0i32, 0i32);
                for j in 0..16 {
                    let xh_0 = ((qh >> j) << 4) as u8 & 0x10;
                    let xh_1 = (qh >> (j + 12)) as u8 & 0x10;
                    let x0 = ((x.qs[j] & 0xf) | xh_0) as i32;
                    let x1 = ((x.qs[j] >> 4) | xh_1) as i32;
                    sumi0 += x0 * y.qs[j] as i32;
                    sumi1 += x1 * y.qs[j + 16] as i32;
                }
                let sumi = sumi0 + sumi1;
                sumf += (h(x.d) * h(y.d)) * sumi as f32 + h(x.m) * h(y.s);
            }
            sumf
        }
        (QuantFormat::Q4_K | QuantFormat::Q5_K | QuantFormat::Q6_K, Activations::Q8_K(y)) => {
            let mut sums = [0.0f32; 8];
            let mut sumf = 0.0f32;
            let nb = y.len();
            for (i, y) in y.iter().enumerate() {
                let block = &row[i * row.len() / nb..(i + 1) * row.len() / nb];
                let mut aux8 = [0i8; 256];
                let mut aux32 = [0i32; 8];
                // (d, dmin, per-16-value scale, Σ bsums · mins) after filling aux8.
                let (d, dmin, scale16, sumi): (f32, f32, [i32; 16], i32) = if format == QuantFormat::Q6_K {
                    let x = bytemuck::from_bytes::<BlockQ6K>(block);
                    let (mut a, mut q4, mut qh) = (0, 0, 0);
                    for _ in 0..2 {
                        for l in 0..32 {
                            let (ql, qhl) = (&x.ql[q4..], x.qh[qh + l]);
                            aux8[a + l] = ((ql[l] & 0xf) | ((qhl & 3) << 4)) as i8 - 32;
                            aux8[a + l + 32] = ((ql[l + 32] & 0xf) | (((qhl >> 2) & 3) << 4)) as i8 - 32;
                            aux8[a + l + 64] = ((ql[l] >> 4) | (((qhl >> 4) & 3) << 4)) as i8 - 32;
                            aux8[a + l + 96] = ((ql[l + 32] >> 4) | (((qhl >> 6) & 3) << 4)) as i8 - 32;
                        }
                        a += 128;
                        q4 += 64;
                        qh += 32;
                    }
                    (h(x.d), 0.0, x.scales.map(i32::from), 0)
                } else {
                    let (d, dmin, scales, qs, hm) = if format == QuantFormat::Q4_K {
                        let x = bytemuck::from_bytes::<BlockQ4K>(block);
                        (x.d, x.dmin, x.scales, x.qs, None)
                    } else {
                        let x = bytemuck::from_bytes::<BlockQ5K>(block);
                        (x.d, x.dmin, x.scales, x.qs, Some(x.qh))
                    };
                    let (mut a, mut q4, mut m) = (0, 0, 1u8);
                    for _ in 0..4 {
                        for l in 0..32 {
                            aux8[a + l] = (qs[q4 + l] & 0xf) as i8;
                        }
                        if let Some(hm) = hm {
                            for l in 0..32 {
                                aux8[a + l] += if hm[l] & m != 0 { 16 } else { 0 };
                            }
                        }
                        a += 32;
                        m <<= 1;
                        for l in 0..32 {
                            aux8[a + l] = (qs[q4 + l] >> 4) as i8;
                        }
                        if let Some(hm) = hm {
                            for l in 0..32 {
                                aux8[a + l] += if hm[l] & m != 0 { 16 } else { 0 };
                            }
                        }
                        a += 32;
                        m <<= 1;
                        q4 += 32;
                    }
                    let (kmask1, kmask2, kmask3) = (0x3f3f3f3fu32, 0x0f0f0f0fu32, 0x03030303u32);
                    let mut utmp: [u32; 4] = [0; 4];
                    for (k, u) in utmp.iter_mut().take(3).enumerate() {
                        *u = u32::from_le_bytes(scales[4 * k..4 * k + 4].try_into().unwrap());
                    }
                    utmp[3] = ((utmp[2] >> 4) & kmask2) | (((utmp[1] >> 6) & kmask3) << 4);
                    let uaux = utmp[1] & kmask1;
                    utmp[1] = (utmp[2] & kmask2) | (((utmp[0] >> 6) & kmask3) << 4);
                    utmp[2] = uaux;
                    utmp[0] &= kmask1;
                    let bytes: Vec<u8> = utmp.iter().flat_map(|u| u.to_le_bytes()).collect();
                    let (sc, mins) = (&bytes[..8], &bytes[8..]);
                    let mut sumi = 0;
                    for j in 0..16 {
                        sumi += i16::from_le_bytes(y.bsums[j]) as i32 * mins[j / 2] as i32;
                    }
                    (h(d), h(dmin), std::array::from_fn(|j| sc[j / 2] as i32), sumi)
                };
                // Q4_K/Q5_K loop over 8 sub-blocks of 32 with four aux16 rounds each, Q6_K
                // over 16 of 16 with two: the same 8-value rounds, each with its scale.
                for (k, (a, q8)) in aux8.chunks_exact(8).zip(y.qs.chunks_exact(8)).enumerate() {
                    let scale = scale16[k / 2];
                    let mut aux16 = [0i16; 8];
                    for l in 0..8 {
                        aux16[l] = (q8[l] as i32 * a[l] as i32) as i16;
                    }
                    for l in 0..8 {
                        aux32[l] += scale * aux16[l] as i32;
                    }
                }
                let d = d * y.d();
                for l in 0..8 {
                    sums[l] += d * aux32[l] as f32;
                }
                if format != QuantFormat::Q6_K {
                    let dmin = dmin * y.d();
                    sumf -= dmin * sumi as f32;
                }
            }
            for l in 0..8 {
                sumf += sums[l];
            }
            sumf
        }
        (QuantFormat::BF16, Activations::BF16(y)) => {
            let mut sumf = 0.0f64;
            for (x, &y) in row.chunks_exact(2).zip(y) {
                let x = f32::from_bits((u16::from_le_bytes([x[0], x[1]]) as u32) << 16);
                sumf += (x * f32::from_bits((y as u32) << 16)) as f64;
            }
            sumf as f32
        }
        _ => unreachable!("{format} with other activations"),
    }
}

#[test]
fn new_formats_are_llama_cpp_generic_bit_for_bit() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    for format in NEW_FORMATS {
        for (rows, cols) in [(5, 256), (3, 1024), (1, 2560)] {
            let w = random_weights(format, rows * cols / format.block_size(), &mut rng);
            let xs: Vec<Activations> = (0..2)
                .map(|t| {
                    // Spread magnitudes, and zeros: one vector all zeros in its first 256.
                    let x: Vec<f32> = (0..cols)
                        .map(|i| {
                            if t == 1 && i < 256 { 0.0 } else { rng.uniform(-1.0, 1.0) * 10f32.powi(i as i32 % 5 - 2) }
                        })
                        .collect();
                    Activations::for_weights(format, &x).unwrap()
                })
                .collect();
            let got = matmul_quant(format, &w, rows, cols, &xs).unwrap();
            let row_bytes = w.len() / rows;
            for (t, x) in xs.iter().enumerate() {
                for (r, row) in w.chunks_exact(row_bytes).enumerate() {
                    let (g, want) = (got[t * rows + r], llama_cpp_generic(format, row, x));
                    assert_eq!(g.to_bits(), want.to_bits(), "{format} {rows}x{cols} vector {t} row {r}: {g} vs {want}");
                }
            }
        }
    }
}

#[test]
fn new_formats_stay_plain_and_rows_dequantize() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let (rows, cols) = (2 * GROUP + 1, 256);
    for format in NEW_FORMATS {
        let plain = random_weights(format, rows * cols / format.block_size(), &mut rng);
        let mut data = plain.clone();
        assert_eq!(crate::cpu::interleave_rows(format, &mut data, rows, cols).unwrap(), RowLayout::Plain, "{format}");
        assert_eq!(data, plain, "{format}: left as in the file");
        let mut all = vec![0.0; rows * cols];
        dequantize(format, &plain, &mut all).unwrap();
        for r in [0, GROUP, rows - 1] {
            let mut row = vec![0.0; cols];
            crate::cpu::dequantize_row(format, RowLayout::Plain, &data, rows, r, &mut row).unwrap();
            assert_eq!(row, all[r * cols..(r + 1) * cols], "{format} row {r}");
        }
    }
}

#[test]
fn ragged_and_mismatched_k_quant_inputs_are_errors() {
    let ragged = Activations::for_weights(QuantFormat::Q4_K, &[0.5; 300]).err().expect("300 is not whole blocks");
    assert!(matches!(ragged, KernelError::RaggedValues { format: QuantFormat::Q4_K, values: 300 }), "{ragged}");
    assert!(ragged.to_string().contains("Q4_K") && ragged.to_string().contains("300"), "{ragged}");
    let act = Activations::for_weights(QuantFormat::Q4_K, &[0.5; 256]).unwrap();
    let err = matvec_quant(QuantFormat::Q4_K, &[0; 2 * 144], 2, 300, &act).unwrap_err();
    assert!(err.to_string().contains("Q4_K") && err.to_string().contains("300"), "{err}");
    assert!(matvec_quant(QuantFormat::Q6_K, &[0; 209], 1, 256, &act).is_err(), "a byte short");
    assert!(matvec_quant(QuantFormat::Q6_K, &[0; 210], 1, 512, &act).is_err(), "x too short");
    assert!(matvec_quant(QuantFormat::Q6_K, &[0; 210], 1, 256, &act).is_ok());
    // Q8_K is only ever the activations' format, and a Q8_0 vector does not fit K-quant rows.
    let err = matvec_quant(QuantFormat::Q8_K, &[0; 292], 1, 256, &act).unwrap_err();
    assert!(matches!(err, KernelError::UnsupportedFormat(QuantFormat::Q8_K)), "{err}");
    assert!(!QuantFormat::Q8_K.is_supported());
    let q8_0 = Activations::for_weights(QuantFormat::Q5_0, &[0.5; 256]).unwrap();
    assert!(matvec_quant(QuantFormat::Q4_K, &[0; 144], 1, 256, &q8_0).is_err());
    assert!(Activations::for_weights(QuantFormat::Q5_1, &[0.5; 48]).is_err());
}
