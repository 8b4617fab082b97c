//! Model architectures. Each is one file with its config struct and forward pass; the pieces
//! they share (quantised weight matrices, errors) live here.

pub mod llama;

use hearth_kernels::KernelError;
use hearth_kernels::cpu::{Activations, matmul_quant};
use hearth_kernels::quant::{QuantFormat, dequantize};
use thiserror::Error;

use crate::gguf::{ByteSource, Gguf, GgufError, TensorData, TensorInfo};

#[derive(Debug, Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("architecture {0:?} is not supported (llama is)")]
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
    #[error("token id {token} is outside the vocabulary of {vocab}")]
    TokenOutOfRange { token: u32, vocab: usize },
}

/// A weight matrix kept in its file format: `rows` outputs, each `cols` values long (GGUF
/// dims `[cols, rows]`). Multiplying quantises the activations as llama.cpp does.
pub struct QMatrix {
    pub format: QuantFormat,
    pub rows: usize,
    pub cols: usize,
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
        Ok(Self { format: info.format, rows, cols, data: g.tensor_data(src, info)? })
    }

    /// `Y = X Wᵀ` for `n` vectors of `cols` values laid end to end: `[n][rows]`.
    pub fn matmul(&self, xs: &[f32]) -> Result<Vec<f32>, ModelError> {
        let acts = xs
            .chunks_exact(self.cols)
            .map(|x| Activations::for_weights(self.format, x))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(matmul_quant(self.format, &self.data, self.rows, self.cols, &acts)?)
    }

    /// Row `r` dequantised (an embedding lookup).
    pub fn row(&self, r: usize) -> Result<Vec<f32>, ModelError> {
        let row_bytes = self.data.len() / self.rows.max(1);
        let bytes = self
            .data
            .get(r * row_bytes..(r + 1) * row_bytes)
            .ok_or(ModelError::TokenOutOfRange { token: r as u32, vocab: self.rows })?;
        let mut out = vec![0.0; self.cols];
        dequantize(self.format, bytes, &mut out)?;
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

fn tensor_info<'a>(g: &'a Gguf, name: &str, expected: &[u64]) -> Result<&'a TensorInfo, ModelError> {
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
