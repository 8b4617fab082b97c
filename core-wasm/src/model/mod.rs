//! Model architectures. Each is one file with its config struct and forward pass; the pieces
//! they share (quantised weight matrices, errors) live here.

pub mod config;
mod op_profile;
pub mod transformer;
pub mod transformer_gpu;

use hearth_kernels::KernelError;
use hearth_kernels::cpu::{Activations, QuantWeights, RowLayout, dequantize_row, interleave_rows, matmul_quant_many};
use hearth_kernels::quant::{QuantFormat, dequantize};
use thiserror::Error;

use crate::gguf::{ByteSource, Gguf, GgufError, TensorData, TensorInfo};

#[derive(Debug, Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("architecture {0:?} is not supported (supported: {list})", list = config::Architecture::supported_list())]
    UnsupportedArchitecture(String),
    #[error("the model has no tensor {0:?}")]
    MissingTensor(String),
    #[error("tensor {name:?} has shape {found:?}, expected {expected:?}")]
    TensorShape { name: String, expected: Vec<u64>, found: Vec<u64> },
    #[error("tensor {name:?} is {format}, which is not supported yet")]
    UnsupportedFormat { name: String, format: QuantFormat },
    #[error("metadata {key} = {value} is not a valid model setting: {why}")]
    BadConfig { key: String, value: String, why: &'static str },
    #[error("the prompt needs {needed} positions but the context holds {context}")]
    ContextFull { needed: usize, context: usize },
    #[error("tensor {name:?} cannot go to the GPU: {source}")]
    GpuTensor { name: String, source: KernelError },
    #[error("a forward pass takes 1 to {max} tokens, not {tokens}")]
    BadChunk { tokens: usize, max: usize },
    #[error("token id {token} is outside the vocabulary of {vocab}")]
    TokenOutOfRange { token: u32, vocab: usize },
}

/// A weight matrix kept in its file format: `rows` outputs, each `cols` values long (GGUF
/// dims `[cols, rows]`). Multiplying quantises the activations as llama.cpp does.
pub struct QMatrix {
    pub format: QuantFormat,
    pub rows: usize,
    pub cols: usize,
    /// Where the rows sit in `data`: interleaved for the SIMD kernels when the bytes are our
    /// own copy (rearranged in place at load); as in the file when they are shared with it.
    layout: RowLayout,
    data: TensorData,
}

impl QMatrix {
    /// Loads tensor `name`, which must have GGUF dims `[cols, rows]`.
    pub fn load<S: ByteSource + ?Sized>(
        g: &Gguf,
        src: &S,
        name: &str,
        cols: usize,
        rows: usize,
    ) -> Result<Self, ModelError> {
        let info = tensor_info(g, name, &[cols as u64, rows as u64])?;
        if !info.format.is_supported() {
            return Err(ModelError::UnsupportedFormat { name: name.into(), format: info.format });
        }
        let mut data = g.tensor_data(src, info)?;
        data.detach_from_file();
        let layout = match data.own_mut() {
            Some(bytes) => interleave_rows(info.format, bytes, rows, cols)?,
            None => RowLayout::Plain,
        };
        Ok(Self { format: info.format, rows, cols, layout, data })
    }

    /// `Y = X Wᵀ` for `n` vectors of `cols` values laid end to end: `[n][rows]`.
    pub fn matmul(&self, xs: &[f32]) -> Result<Vec<f32>, ModelError> {
        let [y] = Self::matmul_many([self], xs)?;
        Ok(y)
    }

    /// [`QMatrix::matmul`] for several matrices of the same input width (q, k and v; gate and
    /// up) in one parallel pass, quantising the input once per activation format.
    pub fn matmul_many<const N: usize>(mats: [&Self; N], xs: &[f32]) -> Result<[Vec<f32>; N], ModelError> {
        let mut ys: [Vec<f32>; N] = std::array::from_fn(|_| Vec::new());
        let mut todo: Vec<usize> = (0..N).collect();
        while let Some(&first) = todo.first() {
            // Every matrix whose activations take the same format as the first one left.
            let format = mats[first].format.vec_dot_format();
            let (same, rest): (Vec<usize>, Vec<usize>) =
                todo.iter().partition(|&&i| mats[i].format.vec_dot_format() == format);
            let acts = xs
                .chunks_exact(mats[first].cols)
                .map(|x| Activations::for_weights(mats[first].format, x))
                .collect::<Result<Vec<_>, _>>()?;
            let weights: Vec<QuantWeights> = same.iter().map(|&i| mats[i].weights()).collect();
            for (i, y) in same.into_iter().zip(matmul_quant_many(&weights, &acts)?) {
                ys[i] = y;
            }
            todo = rest;
        }
        Ok(ys)
    }

    fn weights(&self) -> QuantWeights<'_> {
        QuantWeights { format: self.format, layout: self.layout, data: &self.data, rows: self.rows, cols: self.cols }
    }

    /// Row `r` dequantised (an embedding lookup).
    pub fn row(&self, r: usize) -> Result<Vec<f32>, ModelError> {
        if r >= self.rows {
            return Err(ModelError::TokenOutOfRange { token: r as u32, vocab: self.rows });
        }
        let mut out = vec![0.0; self.cols];
        dequantize_row(self.format, self.layout, &self.data, self.rows, r, &mut out)?;
        Ok(out)
    }
}

/// A 1-D f32 weight (norms), dequantised at load.
pub fn load_vector<S: ByteSource + ?Sized>(g: &Gguf, src: &S, name: &str, len: usize) -> Result<Vec<f32>, ModelError> {
    let info = tensor_info(g, name, &[len as u64])?;
    let bytes = g.read_tensor(src, info)?;
    let mut out = vec![0.0; len];
    dequantize(info.format, &bytes, &mut out)
        .map_err(|_| ModelError::UnsupportedFormat { name: name.into(), format: info.format })?;
    Ok(out)
}

pub(crate) fn tensor_info<'a>(g: &'a Gguf, name: &str, expected: &[u64]) -> Result<&'a TensorInfo, ModelError> {
    let info = g.tensor(name).ok_or_else(|| ModelError::MissingTensor(name.into()))?;
    if info.dims != expected {
        return Err(ModelError::TensorShape {
            name: name.into(),
            expected: expected.to_vec(),
            found: info.dims.clone(),
        });
    }
    Ok(info)
}
