use thiserror::Error;

use crate::quant::QuantFormat;

/// Everything a kernel call can fail with; each message names the offending value.
#[derive(Debug, Error)]
pub enum KernelError {
    #[error(
        "matvec shape mismatch: matrix has {matrix_len} values, expected rows {rows} x cols {cols}; vector has {vector_len}, expected {cols}"
    )]
    MatvecShape { rows: usize, cols: usize, matrix_len: usize, vector_len: usize },

    #[error("no WebGPU adapter: {0}")]
    NoAdapter(String),

    #[error("the GPU device could not be created: {0}")]
    RequestDevice(#[from] wgpu::RequestDeviceError),

    #[error("a buffer of {bytes} bytes exceeds this device's limit of {limit} bytes per storage binding")]
    BufferTooLarge { bytes: u64, limit: u64 },

    #[error("{rows} rows exceed the {limit} workgroups this device can dispatch in one dimension")]
    TooManyRows { rows: usize, limit: u32 },

    #[error("reading results back from the GPU failed: {0}")]
    Readback(String),

    #[error("the GPU device was lost: {0}")]
    DeviceLost(String),

    #[error("{format} data of {bytes} bytes does not hold {values} values")]
    QuantLength { format: QuantFormat, values: usize, bytes: usize },

    #[error("{bytes} is not a whole number of {block}-byte blocks")]
    RaggedBlocks { bytes: usize, block: usize },

    #[error("{values} values are not a whole number of {format} blocks of {} values", format.block_size())]
    RaggedValues { format: QuantFormat, values: usize },

    #[error("row {row} is outside a matrix of {rows} rows")]
    RowOutOfRange { row: usize, rows: usize },

    #[error("{op}: a step of {tokens} tokens exceeds the {max} its buffers were sized for")]
    TooManyTokens { op: &'static str, tokens: u32, max: u32 },

    #[error("{len} values at offset {offset} do not fit a buffer of {buffer} values")]
    OutOfBounds { offset: usize, len: usize, buffer: usize },

    #[error("{op}: {why}")]
    OpShape { op: &'static str, why: String },

    #[error("tensor format {0} is not supported yet")]
    UnsupportedFormat(QuantFormat),
}
