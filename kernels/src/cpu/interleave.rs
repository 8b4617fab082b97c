//! An optional in-memory layout for quantised weights that the SIMD row kernels read without
//! shuffling: each group of [`GROUP`] consecutive rows is stored block by block, with the eight
//! rows' copies of each block side by side. Rows after the last whole group stay as they are.
//!
//! Within one group, block `b` of all eight rows (eight blocks' worth of bytes, so the matrix
//! keeps its size) is:
//!
//! - each 2-byte header field (`d`, then `m` for Q4_1) of rows 0..8 in turn: `[d0 .. d7][m0 .. m7]`;
//! - then the quant bytes in 4-byte pieces, piece `j` of rows 0..8 in turn:
//!   `[q0[0..4] .. q7[0..4]][q0[4..8] .. q7[4..8]] ...`.
//!
//! So one 16-byte load gives eight rows' scales, and one 32-byte load gives four quant bytes of
//! each row in its own 32-bit lane, ready for `maddubs` against four activation bytes repeated
//! in every lane (see [`super::quant_avx2`]). The file's layout would need a transpose of each
//! group per block, on every matrix-vector product, to get there.

use rayon::prelude::*;

use crate::KernelError;
use crate::quant::{QuantFormat, dequantize};

/// Rows interleaved together.
pub const GROUP: usize = 8;

/// How the rows of a quantised matrix are laid out in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowLayout {
    /// As in the GGUF file: row after row.
    Plain,
    /// Whole groups of [`GROUP`] rows interleaved as the module describes; leftover rows plain.
    Interleaved,
}

/// (header bytes, quant bytes) of one block of a format that can be interleaved.
fn block_parts(format: QuantFormat) -> Option<(usize, usize)> {
    match format {
        QuantFormat::Q4_0 => Some((2, 16)),
        QuantFormat::Q4_1 => Some((4, 16)),
        QuantFormat::Q8_0 => Some((2, 32)),
        _ => None,
    }
}

/// Whether this CPU has kernels for the interleaved layout (so it is worth producing).
fn has_kernels() -> bool {
    super::SimdLevel::detected().has_avx2()
}

/// Rearranges `data` (`rows` plain rows of `cols` values of `format`) in place into the layout
/// the SIMD kernels of this CPU read fastest, and says which layout that is: interleaved where
/// this CPU has kernels for it and the format can be, else left plain.
pub fn interleave_rows(
    format: QuantFormat,
    data: &mut [u8],
    rows: usize,
    cols: usize,
) -> Result<RowLayout, KernelError> {
    check_len(format, data, rows, cols)?;
    if !has_kernels() {
        return Ok(RowLayout::Plain);
    }
    interleave_rows_always(format, data, rows, cols)
}

/// [`interleave_rows`] whatever the CPU (the tests and portable fallback use it too).
pub(crate) fn interleave_rows_always(
    format: QuantFormat,
    data: &mut [u8],
    rows: usize,
    cols: usize,
) -> Result<RowLayout, KernelError> {
    let Some((header, quants)) = block_parts(format) else { return Ok(RowLayout::Plain) };
    let row_bytes = check_len(format, data, rows, cols)?;
    if row_bytes == 0 {
        return Ok(RowLayout::Plain);
    }
    // Groups are independent, so the pool shares them out (this runs over the whole model at
    // load); each worker keeps one scratch copy of a group.
    let groups = data.par_chunks_exact_mut(GROUP * row_bytes);
    groups.for_each_init(
        || vec![0u8; GROUP * row_bytes],
        |plain, group| {
            super::pool::timed(|| {
                plain.copy_from_slice(group);
                match (header, quants) {
                    (2, 16) => interleave_group::<2, 16>(plain, group, row_bytes),
                    (4, 16) => interleave_group::<4, 16>(plain, group, row_bytes),
                    _ => interleave_group::<2, 32>(plain, group, row_bytes),
                }
            })
        },
    );
    Ok(RowLayout::Interleaved)
}

/// Writes the plain rows of one group into `group` interleaved, for blocks of `H` header and
/// `Q` quant bytes (constants, so every piece is a fixed-size move).
fn interleave_group<const H: usize, const Q: usize>(plain: &[u8], group: &mut [u8], row_bytes: usize) {
    for (r, row) in plain.chunks_exact(row_bytes).enumerate() {
        for (block, out) in row.chunks_exact(H + Q).zip(group.chunks_exact_mut(GROUP * (H + Q))) {
            for f in 0..H / 2 {
                out[f * 2 * GROUP + 2 * r..][..2].copy_from_slice(&block[2 * f..][..2]);
            }
            for j in 0..Q / 4 {
                out[H * GROUP + j * 4 * GROUP + 4 * r..][..4].copy_from_slice(&block[H + 4 * j..][..4]);
            }
        }
    }
}

/// Where each piece of row `r`'s block `b` goes in its interleaved group: (range within the
/// block, offset within the group).
fn pieces(header: usize, quants: usize, b: usize, r: usize) -> impl Iterator<Item = (std::ops::Range<usize>, usize)> {
    let base = b * GROUP * (header + quants);
    let fields = (0..header / 2).map(move |f| (2 * f..2 * f + 2, base + f * 2 * GROUP + 2 * r));
    let quads = (0..quants / 4)
        .map(move |j| (header + 4 * j..header + 4 * j + 4, base + header * GROUP + j * 4 * GROUP + 4 * r));
    fields.chain(quads)
}

/// One interleaved group (`GROUP` rows of `row_bytes`) back in the file's layout.
pub(crate) fn deinterleave_group(format: QuantFormat, group: &[u8], row_bytes: usize) -> Vec<u8> {
    let mut plain = group.to_vec();
    if let Some((header, quants)) = block_parts(format) {
        for (r, row) in plain.chunks_exact_mut(row_bytes).enumerate() {
            for (b, block) in row.chunks_exact_mut(header + quants).enumerate() {
                for (src, dst) in pieces(header, quants, b, r) {
                    block[src.clone()].copy_from_slice(&group[dst..dst + src.len()]);
                }
            }
        }
    }
    plain
}

/// Row `r`'s bytes in the file's layout, wherever `layout` put them.
pub fn plain_row(
    format: QuantFormat,
    layout: RowLayout,
    data: &[u8],
    rows: usize,
    cols: usize,
    r: usize,
) -> Result<Vec<u8>, KernelError> {
    let row_bytes = check_len(format, data, rows, cols)?;
    if r >= rows {
        return Err(KernelError::RowOutOfRange { row: r, rows });
    }
    let grouped = rows / GROUP * GROUP;
    let Some((header, quants)) = block_parts(format).filter(|_| layout == RowLayout::Interleaved && r < grouped) else {
        return Ok(data[r * row_bytes..][..row_bytes].to_vec());
    };
    let group = &data[r / GROUP * GROUP * row_bytes..][..GROUP * row_bytes];
    let mut row = vec![0u8; row_bytes];
    for (b, block) in row.chunks_exact_mut(header + quants).enumerate() {
        for (src, dst) in pieces(header, quants, b, r % GROUP) {
            block[src.clone()].copy_from_slice(&group[dst..dst + src.len()]);
        }
    }
    Ok(row)
}

/// Row `r` dequantised into `out` (`cols` values).
pub fn dequantize_row(
    format: QuantFormat,
    layout: RowLayout,
    data: &[u8],
    rows: usize,
    r: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    let row = plain_row(format, layout, data, rows, out.len(), r)?;
    dequantize(format, &row, out)
}

/// Bytes per row, after checking that `data` holds exactly `rows` rows of `cols` values.
fn check_len(format: QuantFormat, data: &[u8], rows: usize, cols: usize) -> Result<usize, KernelError> {
    let row_bytes = format.bytes_for(cols as u64).and_then(|b| usize::try_from(b).ok());
    match row_bytes {
        Some(row_bytes) if rows.checked_mul(row_bytes) == Some(data.len()) => Ok(row_bytes),
        _ => Err(KernelError::QuantLength { format, values: rows.saturating_mul(cols), bytes: data.len() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaving_moves_every_byte_and_rows_read_back() {
        for format in [QuantFormat::Q4_0, QuantFormat::Q4_1, QuantFormat::Q8_0] {
            let (rows, cols) = (2 * GROUP + 3, 96);
            let plain: Vec<u8> =
                (0..rows * format.bytes_for(cols as u64).unwrap() as usize).map(|i| (i * 7 + i / 251) as u8).collect();
            let mut data = plain.clone();
            assert_eq!(interleave_rows_always(format, &mut data, rows, cols).unwrap(), RowLayout::Interleaved);
            assert_ne!(data, plain, "{format}: whole groups move");
            let mut sorted = (data.clone(), plain.clone());
            sorted.0.sort_unstable();
            sorted.1.sort_unstable();
            assert_eq!(sorted.0, sorted.1, "{format}: a permutation of the bytes");
            let row_bytes = plain.len() / rows;
            assert_eq!(data[2 * GROUP * row_bytes..], plain[2 * GROUP * row_bytes..], "{format}: leftover rows stay");
            for r in 0..rows {
                let back = plain_row(format, RowLayout::Interleaved, &data, rows, cols, r).unwrap();
                assert_eq!(back, plain[r * row_bytes..][..row_bytes], "{format} row {r}");
            }
            let group = deinterleave_group(format, &data[GROUP * row_bytes..][..GROUP * row_bytes], row_bytes);
            assert_eq!(group, plain[GROUP * row_bytes..][..GROUP * row_bytes], "{format} second group");
        }
    }

    #[test]
    fn the_layout_puts_scales_then_quant_quads_side_by_side() {
        // Q4_1, one block per row: row r has d = [r, 0x10], m = [r, 0x20], qs[i] = 16 r + i.
        let mut data: Vec<u8> = (0..GROUP as u8)
            .flat_map(|r| [r, 0x10, r, 0x20].into_iter().chain((0..16).map(move |i| 16 * r + i)))
            .collect();
        interleave_rows_always(QuantFormat::Q4_1, &mut data, GROUP, 32).unwrap();
        assert_eq!(data[..4], [0, 0x10, 1, 0x10], "d of rows 0 and 1");
        assert_eq!(data[16..18], [0, 0x20], "then m of row 0");
        assert_eq!(data[32..40], [0, 1, 2, 3, 16, 17, 18, 19], "qs 0..4 of rows 0 and 1");
        assert_eq!(data[64..68], [4, 5, 6, 7], "qs 4..8 of row 0 after all rows' first quads");
    }

    #[test]
    fn other_formats_and_bad_lengths() {
        let mut data = vec![0u8; 4 * 8 * 32];
        assert_eq!(interleave_rows_always(QuantFormat::F32, &mut data, 8, 32).unwrap(), RowLayout::Plain);
        assert!(interleave_rows(QuantFormat::Q4_0, &mut data, 8, 32).is_err(), "8 rows of Q4_0 are 144 bytes");
        assert!(plain_row(QuantFormat::F32, RowLayout::Plain, &data, 8, 32, 8).is_err());
    }
}
