//! The kernel probe the first screen runs: one GPU and one CPU matvec on inputs whose exact
//! product is known, so the page (and the end-to-end test) can say "correct", not just "ran".

use serde::{Deserialize, Serialize};

/// Rows and columns of the probe matrix: big enough that the rayon pool splits it.
pub const PROBE_ROWS: usize = 1024;
pub const PROBE_COLS: usize = 1024;

/// Small integers: every product and partial sum is exactly representable in f32, so any
/// summation order (GPU tree, CPU lanes) gives the exact result.
pub fn probe_inputs(rows: usize, cols: usize) -> (Vec<f32>, Vec<f32>) {
    let w = (0..rows * cols).map(|i| ((i / cols + 3 * (i % cols)) % 7) as f32 - 3.0).collect();
    let x = (0..cols).map(|c| (c % 5) as f32 - 2.0).collect();
    (w, x)
}

/// The exact product, in integer arithmetic, independent of every kernel.
pub fn probe_expected(rows: usize, cols: usize) -> Vec<f32> {
    (0..rows)
        .map(|r| (0..cols).map(|c| (((r + 3 * c) % 7) as i64 - 3) * ((c % 5) as i64 - 2)).sum::<i64>() as f32)
        .collect()
}

/// One kernel run as the page shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelRun {
    /// "webgpu matvec" or "cpu matvec (rayon)".
    pub kernel: String,
    pub rows: usize,
    pub cols: usize,
    /// The first few outputs and the sum of all of them, for display and checking.
    pub head: Vec<f32>,
    pub checksum: f64,
    /// Largest absolute difference from [`probe_expected`].
    pub max_abs_error: f32,
    pub millis: f64,
}

impl KernelRun {
    pub fn new(kernel: &str, rows: usize, cols: usize, y: &[f32], millis: f64) -> Self {
        let expected = probe_expected(rows, cols);
        let max_abs_error = if y.len() == expected.len() {
            y.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
        } else {
            f32::INFINITY
        };
        Self {
            kernel: kernel.to_string(),
            rows,
            cols,
            head: y.iter().take(4).copied().collect(),
            checksum: y.iter().map(|&v| f64::from(v)).sum(),
            max_abs_error,
            millis,
        }
    }

    /// Correct means exact: the probe's inputs leave no room for rounding.
    pub fn is_correct(&self) -> bool {
        self.max_abs_error == 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_report_flags_a_wrong_result() {
        let (rows, cols) = (8, 8);
        let mut y = probe_expected(rows, cols);
        assert!(KernelRun::new("t", rows, cols, &y, 0.0).is_correct());
        y[3] += 1.0;
        let run = KernelRun::new("t", rows, cols, &y, 0.0);
        assert!(!run.is_correct());
        assert_eq!(run.max_abs_error, 1.0);
        assert!(!KernelRun::new("t", rows, cols, &y[..4], 0.0).is_correct(), "short output");
    }

    #[test]
    fn probe_outputs_are_not_trivial() {
        let y = probe_expected(PROBE_ROWS, PROBE_COLS);
        assert!(y.iter().any(|&v| v != 0.0));
        assert!(y.windows(2).any(|p| p[0] != p[1]), "rows should differ");
    }
}
