//! A GGUF file on disk as a [`ByteSource`] whose tensors are memory-mapped, natively.
//!
//! Each tensor is its own private (copy-on-write) mapping of its byte range: weights the CPU
//! reads as they are in the file stay clean file pages (shared with the page cache, never
//! copied), and weights the SIMD kernels want rearranged are rearranged once, in place, in their
//! mapping — the pages written become the process's own, the file is never changed. So the
//! model costs the file's size in memory, once, and loads as fast as the disk pages in.
//! One mapping per tensor, rather than one for the file, keeps each tensor's bytes owned by
//! its matrix, with no shared mutable state between them.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::MmapOptions;

use crate::gguf::{ByteSource, GgufError, TensorData};

/// A model file opened for reading, cheap to clone (the engine keeps one to reload the CPU
/// backend's weights from when a GPU it ran on is lost).
#[derive(Clone, Debug)]
pub struct MappedFile {
    file: Arc<File>,
    path: PathBuf,
    len: u64,
}

impl MappedFile {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(Self { file: Arc::new(file), path: path.to_owned(), len })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl ByteSource for MappedFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), GgufError> {
        self.file.as_ref().read_exact_at(offset, buf)
    }

    fn share(&self, offset: u64, len: usize) -> Option<TensorData> {
        if len == 0 || offset.checked_add(len as u64)? > self.len {
            return None;
        }
        // SAFETY: a private mapping; the bytes it shows change only if another process
        // rewrites the file while the model is loaded, which no more breaks memory safety than
        // reading garbage weights (every index into them is bounds-checked).
        let map = unsafe { MmapOptions::new().offset(offset).len(len).map_copy(self.file.as_ref()) }.ok()?;
        Some(TensorData::Mapped(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_tensor_is_a_private_mapping_of_its_bytes_and_writing_it_leaves_the_file_alone() {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        tmp.write_all(&bytes).unwrap();
        let file = MappedFile::open(tmp.path()).unwrap();
        assert_eq!(file.len(), 10_000);
        // An offset that is not page-aligned, across a page boundary.
        let mut data = file.share(4000, 300).expect("mapped");
        assert!(matches!(data, TensorData::Mapped(_)));
        assert_eq!(&data[..], &bytes[4000..4300]);
        data.own_mut().unwrap().fill(0xAB);
        assert!(data.iter().all(|&b| b == 0xAB));
        assert_eq!(std::fs::read(tmp.path()).unwrap(), bytes, "the file is unchanged");
        assert_eq!(&file.share(4000, 300).unwrap()[..], &bytes[4000..4300], "a new mapping sees the file");
        assert!(file.share(9_900, 101).is_none(), "past the end");
        let mut buf = [0u8; 4];
        file.read_exact_at(9_996, &mut buf).unwrap();
        assert_eq!(buf, bytes[9_996..]);
    }
}
