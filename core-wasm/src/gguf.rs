//! GGUF reader (versions 2 and 3, little-endian).
//!
//! File layout (ggml/docs/gguf.md):
//!
//! ```text
//! magic "GGUF" | version u32 | tensor_count u64 | kv_count u64
//! kv_count × (key: string, value_type u32, value)        string = len u64 + UTF-8 bytes
//! tensor_count × (name: string, n_dims u32, dims n_dims × u64, type u32, offset u64)
//! padding to `general.alignment` (default 32)
//! tensor data; each tensor at data_start + offset, offsets aligned
//! ```
//!
//! The file is hostile until proven otherwise: every count and length is checked against the
//! bytes that remain before anything is allocated for it, arithmetic is checked, arrays may not
//! nest, and every tensor must lie inside the file with a size that matches its shape and type.
//! Only the header is parsed here; tensor bytes are read later, once, through a [`ByteSource`].

use std::collections::BTreeMap;
use std::sync::Arc;

use hearth_kernels::quant::QuantFormat;
use thiserror::Error;

pub const MAGIC: [u8; 4] = *b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's GGML_MAX_DIMS.
pub const MAX_DIMS: u32 = 4;
/// Longest string accepted (keys, token texts, chat templates).
pub const MAX_STRING: u64 = 16 << 20;
/// Most elements in one metadata array (the largest vocabularies are ~262k).
pub const MAX_ARRAY: u64 = 1 << 24;
/// Most metadata entries or tensors.
pub const MAX_ENTRIES: u64 = 1 << 20;

#[derive(Debug, Error)]
pub enum GgufError {
    #[error("not a GGUF file: magic is {0:?}, expected \"GGUF\"")]
    BadMagic([u8; 4]),
    #[error("GGUF version {0} is not supported (2 and 3 are)")]
    UnsupportedVersion(u32),
    #[error("big-endian GGUF files are not supported")]
    BigEndian,
    #[error("the file is truncated: {what} at byte {offset} needs {needed} bytes, {available} remain")]
    Truncated { what: String, offset: u64, needed: u64, available: u64 },
    #[error("{what} claims {value}, more than {limit}: the metadata is corrupt")]
    TooLarge { what: String, value: u64, limit: u64 },
    #[error("metadata {key:?} has unknown value type {type_id}")]
    BadValueType { key: String, type_id: u32 },
    #[error("metadata {key:?} nests an array inside an array")]
    NestedArray { key: String },
    #[error("{what} at byte {offset} is not valid UTF-8")]
    InvalidUtf8 { what: String, offset: u64 },
    #[error("metadata key {0:?} appears twice")]
    DuplicateKey(String),
    #[error("tensor {0:?} appears twice")]
    DuplicateTensor(String),
    #[error("general.alignment {0} is not a non-zero power of two")]
    BadAlignment(u64),
    #[error("tensor {tensor:?} has unknown type id {type_id}")]
    UnknownTensorType { tensor: String, type_id: u32 },
    #[error("tensor {tensor:?} has {n_dims} dimensions; at most {MAX_DIMS} are allowed")]
    TooManyDims { tensor: String, n_dims: u32 },
    #[error("tensor {tensor:?} of shape {dims:?} is not a whole number of {format} blocks, or too large")]
    BadShape { tensor: String, dims: Vec<u64>, format: QuantFormat },
    #[error("tensor {tensor:?} at offset {offset} is not aligned to {alignment} bytes")]
    Misaligned { tensor: String, offset: u64, alignment: u64 },
    #[error(
        "tensor {tensor:?} ({size} bytes at data offset {offset}) runs past the end of the file ({data_len} data bytes)"
    )]
    TensorOutOfBounds { tensor: String, offset: u64, size: u64, data_len: u64 },
    #[error("metadata {0:?} is missing")]
    MissingKey(String),
    #[error("metadata {key:?} is {found}, expected {expected}")]
    WrongType { key: String, expected: &'static str, found: &'static str },
    #[error("reading the model failed: {0}")]
    Io(String),
    #[error("tensor {tensor:?} needs {bytes} bytes, which this process's memory cannot give")]
    OutOfMemory { tensor: String, bytes: u64 },
}

/// Random-access bytes: a native file, a buffer in memory, or (in the browser) an OPFS file
/// handle or a fetched response. Tensor data is read straight from here into its final home.
pub trait ByteSource {
    fn len(&self) -> u64;
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), GgufError>;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `len` bytes at `offset` without copying them, where the source is already in memory.
    fn share(&self, _offset: u64, _len: usize) -> Option<TensorData> {
        None
    }
}

/// A whole file in memory that tensors can point into: a browser fetches the model into one
/// buffer, and the weights stay there instead of being copied out (one copy, not two).
#[derive(Clone, Debug)]
pub struct SharedBytes(Arc<Vec<u8>>);

impl SharedBytes {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Arc::new(bytes))
    }
}

impl ByteSource for SharedBytes {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), GgufError> {
        self.0.as_slice().read_exact_at(offset, buf)
    }
    fn share(&self, offset: u64, len: usize) -> Option<TensorData> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(len).filter(|&end| end <= self.0.len())?;
        Some(TensorData::Shared { bytes: Arc::clone(&self.0), start, end })
    }
}

/// A tensor's bytes: its own copy, a range of a [`SharedBytes`] file, or natively a private
/// (copy-on-write) mapping of its range of the file ([`crate::mapped_file::MappedFile`]).
#[derive(Debug)]
pub enum TensorData {
    Owned(Vec<u8>),
    Shared {
        bytes: Arc<Vec<u8>>,
        start: usize,
        end: usize,
    },
    #[cfg(not(target_arch = "wasm32"))]
    Mapped(memmap2::MmapMut),
}

impl TensorData {
    /// The bytes, where they are this tensor's own to rearrange in place (a copy or a private
    /// mapping); `None` where they are shared with the rest of the file.
    pub fn own_mut(&mut self) -> Option<&mut [u8]> {
        match self {
            Self::Owned(bytes) => Some(bytes),
            Self::Shared { .. } => None,
            #[cfg(not(target_arch = "wasm32"))]
            Self::Mapped(map) => Some(map),
        }
    }

    /// Gives a mapped tensor bytes of its own, copied out of the file, so what is loaded no
    /// longer depends on it: the file may be rewritten, truncated or deleted afterwards. (A
    /// private mapping is not enough: truncating a file drops even the pages a process has
    /// written in its private mapping of it, and reading there raises SIGBUS.) Nothing to do
    /// for bytes in memory.
    pub fn detach_from_file(&mut self) {
        #[cfg(not(target_arch = "wasm32"))]
        if let Self::Mapped(map) = self {
            *self = Self::Owned(map.to_vec());
        }
    }
}

impl std::ops::Deref for TensorData {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Owned(bytes) => bytes,
            Self::Shared { bytes, start, end } => &bytes[*start..*end],
            #[cfg(not(target_arch = "wasm32"))]
            Self::Mapped(map) => map,
        }
    }
}

impl ByteSource for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), GgufError> {
        let start = usize::try_from(offset).ok().filter(|&s| s <= <[u8]>::len(self));
        let end = start.and_then(|s| s.checked_add(buf.len())).filter(|&e| e <= <[u8]>::len(self));
        match (start, end) {
            (Some(s), Some(e)) => {
                buf.copy_from_slice(&self[s..e]);
                Ok(())
            }
            _ => Err(GgufError::Io(format!("read of {} bytes at {offset} past the end", buf.len()))),
        }
    }
}

#[cfg(unix)]
impl ByteSource for std::fs::File {
    fn len(&self) -> u64 {
        self.metadata().map(|m| m.len()).unwrap_or(0)
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), GgufError> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset).map_err(|e| GgufError::Io(e.to_string()))
    }
}

/// A metadata value, as typed in the file.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "u8",
            Value::I8(_) => "i8",
            Value::U16(_) => "u16",
            Value::I16(_) => "i16",
            Value::U32(_) => "u32",
            Value::I32(_) => "i32",
            Value::F32(_) => "f32",
            Value::Bool(_) => "bool",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::U64(_) => "u64",
            Value::I64(_) => "i64",
            Value::F64(_) => "f64",
        }
    }

    /// Any non-negative integer type, widened.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }
}

/// One entry of the tensor index.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the row length (fastest-varying).
    pub dims: Vec<u64>,
    pub format: QuantFormat,
    /// From the start of the data section.
    pub offset: u64,
    pub size: u64,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF header: metadata and tensor index.
#[derive(Clone, Debug)]
pub struct Gguf {
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute file offset where tensor data starts.
    pub data_offset: u64,
}

/// Buffered little-endian reads over a [`ByteSource`], refusing to read past its end.
struct Cursor<'a, S: ByteSource + ?Sized> {
    src: &'a S,
    len: u64,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

const CHUNK: u64 = 1 << 16;

impl<'a, S: ByteSource + ?Sized> Cursor<'a, S> {
    fn new(src: &'a S) -> Self {
        Self { src, len: src.len(), pos: 0, buf: Vec::new(), buf_start: 0 }
    }

    fn remaining(&self) -> u64 {
        self.len - self.pos
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&[u8], GgufError> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                what: what(),
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            });
        }
        let buf_end = self.buf_start + self.buf.len() as u64;
        if self.pos < self.buf_start || self.pos + n > buf_end {
            // n <= remaining <= file length, and strings are capped at MAX_STRING, so this
            // allocation is bounded by real bytes of the file.
            let want = n.max(CHUNK).min(self.remaining());
            self.buf.resize(want as usize, 0);
            self.src.read_exact_at(self.pos, &mut self.buf)?;
            self.buf_start = self.pos;
        }
        let start = (self.pos - self.buf_start) as usize;
        self.pos += n;
        Ok(&self.buf[start..start + n as usize])
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], GgufError> {
        let bytes = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A count that must not exceed `limit`, nor promise more items (of at least `min_item`
    /// bytes each) than the bytes that remain.
    fn count(&mut self, what: &dyn Fn() -> String, limit: u64, min_item: u64) -> Result<u64, GgufError> {
        let n = self.u64(what)?;
        let limit = limit.min(self.remaining() / min_item.max(1));
        if n > limit {
            return Err(GgufError::TooLarge { what: what(), value: n, limit });
        }
        Ok(n)
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, GgufError> {
        let n = self.count(&|| format!("length of {}", what()), MAX_STRING, 1)?;
        let offset = self.pos;
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| GgufError::InvalidUtf8 { what: what(), offset })
    }

    fn value(&mut self, key: &str, type_id: u32, in_array: bool) -> Result<Value, GgufError> {
        let what = || format!("metadata {key:?}");
        Ok(match type_id {
            0 => Value::U8(self.array::<1>(&what)?[0]),
            1 => Value::I8(self.array::<1>(&what)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array(&what)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(&what)?)),
            4 => Value::U32(self.u32(&what)?),
            5 => Value::I32(i32::from_le_bytes(self.array(&what)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(&what)?)),
            7 => Value::Bool(self.array::<1>(&what)?[0] != 0),
            8 => Value::String(self.string(&what)?),
            9 => {
                if in_array {
                    return Err(GgufError::NestedArray { key: key.to_string() });
                }
                let item_type = self.u32(&what)?;
                let min_item = match item_type {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => return Err(GgufError::NestedArray { key: key.to_string() }),
                    other => return Err(GgufError::BadValueType { key: key.to_string(), type_id: other }),
                };
                let n = self.count(&|| format!("array length of {key:?}"), MAX_ARRAY, min_item)?;
                // Bounded: n * min_item <= remaining bytes.
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(key, item_type, true)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(&what)?),
            11 => Value::I64(i64::from_le_bytes(self.array(&what)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(&what)?)),
            other => return Err(GgufError::BadValueType { key: key.to_string(), type_id: other }),
        })
    }
}

impl Gguf {
    /// Parses the header of `src` and checks every tensor against the file's size.
    pub fn read<S: ByteSource + ?Sized>(src: &S) -> Result<Self, GgufError> {
        let mut c = Cursor::new(src);
        let magic: [u8; 4] = c.array(&|| "magic".into())?;
        if magic != MAGIC {
            return Err(GgufError::BadMagic(magic));
        }
        let version = c.u32(&|| "version".into())?;
        if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
            return Err(GgufError::BigEndian);
        }
        if !(2..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion(version));
        }
        // Smallest tensor entry: name length 8 + n_dims 4 + one dim 8 + type 4 + offset 8.
        let tensor_count = c.count(&|| "tensor count".into(), MAX_ENTRIES, 32)?;
        // Smallest metadata entry: key length 8 + type 4 + a 1-byte value.
        let kv_count = c.count(&|| "metadata count".into(), MAX_ENTRIES, 13)?;

        let mut metadata = BTreeMap::new();
        for i in 0..kv_count {
            let key = c.string(&|| format!("metadata key #{i}"))?;
            let type_id = c.u32(&|| format!("type of metadata {key:?}"))?;
            let value = c.value(&key, type_id, false)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(GgufError::DuplicateKey(key));
            }
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a.is_power_of_two() => a,
                Some(a) => return Err(GgufError::BadAlignment(a)),
                None => {
                    return Err(GgufError::WrongType {
                        key: "general.alignment".into(),
                        expected: "an unsigned integer",
                        found: v.type_name(),
                    });
                }
            },
        };

        let mut tensors = Vec::with_capacity(tensor_count as usize);
        let mut names = std::collections::HashSet::new();
        for i in 0..tensor_count {
            let name = c.string(&|| format!("name of tensor #{i}"))?;
            let n_dims = c.u32(&|| format!("dimension count of tensor {name:?}"))?;
            if n_dims > MAX_DIMS {
                return Err(GgufError::TooManyDims { tensor: name, n_dims });
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for d in 0..n_dims {
                dims.push(c.u64(&|| format!("dimension {d} of tensor {name:?}"))?);
            }
            let type_id = c.u32(&|| format!("type of tensor {name:?}"))?;
            let format = QuantFormat::from_ggml_type(type_id)
                .ok_or(GgufError::UnknownTensorType { tensor: name.clone(), type_id })?;
            let offset = c.u64(&|| format!("offset of tensor {name:?}"))?;
            let size = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .filter(|n| dims.first().is_none_or(|&row| row % format.block_size() as u64 == 0) && *n < 1 << 62)
                .and_then(|n| format.bytes_for(n))
                .ok_or_else(|| GgufError::BadShape { tensor: name.clone(), dims: dims.clone(), format })?;
            if offset % alignment != 0 {
                return Err(GgufError::Misaligned { tensor: name, offset, alignment });
            }
            if !names.insert(name.clone()) {
                return Err(GgufError::DuplicateTensor(name));
            }
            tensors.push(TensorInfo { name, dims, format, offset, size });
        }

        let data_offset = c.pos.div_ceil(alignment) * alignment;
        let data_len = c.len.saturating_sub(data_offset);
        for t in &tensors {
            if t.offset.checked_add(t.size).is_none_or(|end| end > data_len) {
                return Err(GgufError::TensorOutOfBounds {
                    tensor: t.name.clone(),
                    offset: t.offset,
                    size: t.size,
                    data_len,
                });
            }
        }
        Ok(Self { version, metadata, tensors, alignment, data_offset })
    }

    pub fn get(&self, key: &str) -> Result<&Value, GgufError> {
        self.metadata.get(key).ok_or_else(|| GgufError::MissingKey(key.to_string()))
    }

    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        match self.get(key)? {
            Value::String(s) => Ok(s),
            other => Err(GgufError::WrongType { key: key.into(), expected: "a string", found: other.type_name() }),
        }
    }

    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        let v = self.get(key)?;
        v.as_u64().ok_or_else(|| GgufError::WrongType {
            key: key.into(),
            expected: "an unsigned integer",
            found: v.type_name(),
        })
    }

    pub fn get_f64(&self, key: &str) -> Result<f64, GgufError> {
        let v = self.get(key)?;
        v.as_f64().ok_or_else(|| GgufError::WrongType { key: key.into(), expected: "a number", found: v.type_name() })
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// One tensor's bytes from `src`: shared with the source where it is in memory, else read.
    pub fn tensor_data<S: ByteSource + ?Sized>(&self, src: &S, tensor: &TensorInfo) -> Result<TensorData, GgufError> {
        let shared = usize::try_from(tensor.size)
            .ok()
            .and_then(|size| src.share(self.data_offset.checked_add(tensor.offset)?, size));
        match shared {
            Some(data) => Ok(data),
            None => self.read_tensor(src, tensor).map(TensorData::Owned),
        }
    }

    /// Reads one tensor's bytes from `src` (the same source the header came from).
    pub fn read_tensor<S: ByteSource + ?Sized>(&self, src: &S, tensor: &TensorInfo) -> Result<Vec<u8>, GgufError> {
        // Bounds were checked against this file's length in `read`; wasm32 also needs it to fit
        // in the address space.
        let size = usize::try_from(tensor.size).map_err(|_| GgufError::TooLarge {
            what: format!("tensor {:?}", tensor.name),
            value: tensor.size,
            limit: usize::MAX as u64,
        })?;
        // In a page, memory runs out at 4 GiB: an error naming the tensor, not a trap.
        let mut bytes = Vec::new();
        bytes
            .try_reserve_exact(size)
            .map_err(|_| GgufError::OutOfMemory { tensor: tensor.name.clone(), bytes: tensor.size })?;
        bytes.resize(size, 0);
        src.read_exact_at(self.data_offset + tensor.offset, &mut bytes)?;
        Ok(bytes)
    }
}
