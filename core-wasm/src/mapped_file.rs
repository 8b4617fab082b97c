//! A GGUF file on disk as a [`ByteSource`] whose tensors are memory-mapped, natively.
//!
//! Each tensor is a private mapping of its byte range: the GPU backend uploads straight from
//! it (no read buffer) and drops it; the CPU backend copies it once into memory of its own
//! ([`TensorData::detach_from_file`]) and rearranges it there in place. The CPU's weights are
//! not left in the mapping because a loaded model must survive its file being replaced (a
//! download over it): truncating a file drops even the pages a process wrote in a private
//! mapping, and reading them then raises SIGBUS. The engine keeps a clone of the file to reload
//! the weights onto the CPU from if a GPU is lost.

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
        // SAFETY: a private mapping, made the process's own before it is used for long
        // (`TensorData::detach_from_file`); until then its bytes change only if another process
        // rewrites the file while the model loads, which gives garbage weights, not unsoundness:
        // every index into them is bounds-checked.
        let map = unsafe { MmapOptions::new().offset(offset).len(len).map_copy(self.file.as_ref()) }.ok()?;
        Some(TensorData::Mapped(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_tensor_is_a_mapping_of_its_bytes_that_detaches_into_a_copy() {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        tmp.write_all(&bytes).unwrap();
        let file = MappedFile::open(tmp.path()).unwrap();
        assert_eq!(file.len(), 10_000);
        // An offset that is not page-aligned, across a page boundary.
        let mut data = file.share(4000, 300).expect("mapped");
        assert!(matches!(data, TensorData::Mapped(_)));
        assert!(data[..] == bytes[4000..4300]);
        data.own_mut().unwrap()[..10].fill(0xAB);
        assert_eq!(std::fs::read(tmp.path()).unwrap(), bytes, "the file is unchanged by a write to its mapping");
        // Detached, a tensor keeps its bytes when the file is rewritten and truncated.
        let mut other = file.share(100, 5000).unwrap();
        other.detach_from_file();
        assert!(matches!(other, TensorData::Owned(_)));
        std::fs::write(tmp.path(), vec![0u8; 10_000]).unwrap();
        std::fs::File::options().write(true).open(tmp.path()).unwrap().set_len(10).unwrap();
        assert!(other[..] == bytes[100..5100], "the detached tensor changed");
        assert!(file.share(9_900, 101).is_none(), "past the end");
    }
}
