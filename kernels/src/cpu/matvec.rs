use rayon::prelude::*;

use crate::KernelError;

/// Rows handed to one rayon task: enough work per task to amortise the scheduling.
const ROWS_PER_TASK: usize = 16;

/// Lanes of independent partial sums in [`dot`]: lets LLVM vectorise the loop (SIMD128 on
/// wasm, SSE/AVX natively) without reassociating a single accumulator.
const LANES: usize = 8;

pub(crate) fn check_matvec_shape(
    matrix_len: usize,
    vector_len: usize,
    rows: usize,
    cols: usize,
) -> Result<(), KernelError> {
    let expected = rows.checked_mul(cols);
    if expected != Some(matrix_len) || vector_len != cols {
        return Err(KernelError::MatvecShape { rows, cols, matrix_len, vector_len });
    }
    Ok(())
}

/// `y = W x`, the reference: `W` is row-major `[rows, cols]`, `x` is `[cols]`, each row summed
/// left to right in f32. Slow and obviously right; every other matvec is tested against it.
pub fn matvec_reference(w: &[f32], x: &[f32], rows: usize, cols: usize) -> Result<Vec<f32>, KernelError> {
    check_matvec_shape(w.len(), x.len(), rows, cols)?;
    Ok((0..rows).map(|r| w[r * cols..(r + 1) * cols].iter().zip(x).fold(0.0f32, |acc, (a, b)| acc + a * b)).collect())
}

/// `y = W x`, fast: rows split across the rayon pool, each dot product in [`LANES`] lanes.
/// Agrees with [`matvec_reference`] up to f32 summation order.
pub fn matvec(w: &[f32], x: &[f32], rows: usize, cols: usize) -> Result<Vec<f32>, KernelError> {
    check_matvec_shape(w.len(), x.len(), rows, cols)?;
    let mut y = vec![0.0f32; rows];
    if cols == 0 {
        return Ok(y);
    }
    y.par_chunks_mut(ROWS_PER_TASK).zip(w.par_chunks(ROWS_PER_TASK * cols)).for_each(|(y_block, w_block)| {
        super::pool::timed(|| {
            for (y_r, w_row) in y_block.iter_mut().zip(w_block.chunks_exact(cols)) {
                *y_r = dot(w_row, x);
            }
        })
    });
    Ok(y)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let (a_body, a_tail) = a.split_at(a.len() - a.len() % LANES);
    let (b_body, b_tail) = b.split_at(a_body.len());
    for (ca, cb) in a_body.chunks_exact(LANES).zip(b_body.chunks_exact(LANES)) {
        for i in 0..LANES {
            lanes[i] += ca[i] * cb[i];
        }
    }
    let tail: f32 = a_tail.iter().zip(b_tail).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page's kernel probe (`hearth_api::probe`) says "correct" only if both kernels give
    /// its exact product.
    #[test]
    fn the_probe_s_expected_product_is_what_both_kernels_give() {
        use hearth_api::probe::{probe_expected, probe_inputs};
        let (rows, cols) = (67, 131);
        let (w, x) = probe_inputs(rows, cols);
        let want = probe_expected(rows, cols);
        assert_eq!(matvec_reference(&w, &x, rows, cols).unwrap(), want);
        assert_eq!(matvec(&w, &x, rows, cols).unwrap(), want);
    }

    fn inputs(rows: usize, cols: usize) -> (Vec<f32>, Vec<f32>) {
        let w = (0..rows * cols).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 250.0).collect();
        let x = (0..cols).map(|i| ((i * 104729 % 997) as f32 - 498.0) / 300.0).collect();
        (w, x)
    }

    #[test]
    fn reference_computes_a_known_product() {
        // [[1 2 3] [4 5 6]] * [1 0 -1] = [-2 -2]
        let w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(matvec_reference(&w, &[1.0, 0.0, -1.0], 2, 3).unwrap(), vec![-2.0, -2.0]);
    }

    #[test]
    fn parallel_matches_reference_on_ragged_shapes() {
        // Shapes that leave remainders in both the row blocks and the dot-product lanes.
        for (rows, cols) in [(1, 1), (3, 7), (17, 9), (33, 64), (257, 129), (1000, 1001)] {
            let (w, x) = inputs(rows, cols);
            let fast = matvec(&w, &x, rows, cols).unwrap();
            let slow = matvec_reference(&w, &x, rows, cols).unwrap();
            for (r, (a, b)) in fast.iter().zip(&slow).enumerate() {
                let tol = 1e-5 * (cols as f32).sqrt() * b.abs().max(1.0);
                assert!((a - b).abs() <= tol, "{rows}x{cols} row {r}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn zero_columns_give_zeros() {
        assert_eq!(matvec(&[], &[], 4, 0).unwrap(), vec![0.0; 4]);
    }

    #[test]
    fn shape_mismatch_is_an_error_naming_the_sizes() {
        let err = matvec(&[1.0; 5], &[1.0; 3], 2, 3).unwrap_err();
        assert!(err.to_string().contains("matrix has 5 values"), "{err}");
        let err = matvec_reference(&[1.0; 6], &[1.0; 2], 2, 3).unwrap_err();
        assert!(err.to_string().contains("vector has 2"), "{err}");
        // rows * cols overflowing usize must not panic.
        assert!(matvec(&[], &[], usize::MAX, 2).is_err());
    }
}
