//! A model file as a `Blob` (a file in OPFS, the model cache's copy, a downloaded body), read a
//! range at a time with `FileReaderSync`: each tensor goes from the file to its place (GPU
//! buffers, or the CPU's own buffer of exactly its size, rearranged there for the SIMD
//! kernels), so the whole file is never in wasm memory. On the GPU the engine keeps this
//! source, a handle and not the bytes, to reload the weights onto the CPU from if the device is
//! lost: from the browser's cache or OPFS, not from a copy held "just in case".

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use hearth_core::gguf::{ByteSource, GgufError};
use wasm_bindgen::JsValue;

/// A `Blob` read synchronously (workers only), counting the bytes read.
#[derive(Clone)]
pub struct BlobSource {
    blob: web_sys::Blob,
    len: u64,
    reader: web_sys::FileReaderSync,
    /// Bytes read so far, shared by the clones.
    read: Rc<Cell<u64>>,
    /// Told the bytes read so far after each read, while the model loads.
    progress: Rc<RefCell<Option<Progress>>>,
}

type Progress = Box<dyn Fn(u64)>;

impl BlobSource {
    /// `Err` where this engine has no `FileReaderSync` (then the file is read whole).
    pub fn new(blob: web_sys::Blob) -> Result<Self, JsValue> {
        let reader = web_sys::FileReaderSync::new()?;
        let progress = Rc::new(RefCell::new(None));
        Ok(Self { len: blob.size() as u64, blob, reader, read: Rc::new(Cell::new(0)), progress })
    }

    /// Calls `report` with the bytes read so far after each read, until
    /// [`BlobSource::stop_reporting`] (here or on a clone).
    pub fn report_progress(&self, report: impl Fn(u64) + 'static) {
        *self.progress.borrow_mut() = Some(Box::new(report));
    }

    pub fn stop_reporting(&self) {
        self.progress.borrow_mut().take();
    }
}

impl ByteSource for BlobSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), GgufError> {
        let end = offset.checked_add(buf.len() as u64).filter(|&end| end <= self.len).ok_or_else(|| {
            GgufError::Io(format!("a read of {} bytes at {offset} runs past the end ({} bytes)", buf.len(), self.len))
        })?;
        let fail = |e: JsValue| {
            let why = e.as_string().unwrap_or_else(|| format!("{e:?}"));
            GgufError::Io(format!("reading {} bytes at {offset} of the model's file: {why}", buf.len()))
        };
        // Offsets are below 2^53, so f64 holds them exactly.
        let range = self.blob.slice_with_f64_and_f64(offset as f64, end as f64).map_err(fail)?;
        let bytes = self.reader.read_as_array_buffer(&range).map_err(fail)?;
        let bytes = js_sys::Uint8Array::new(&bytes);
        if bytes.length() as usize != buf.len() {
            return Err(GgufError::Io(format!(
                "{} bytes at {offset} of the model's file gave {} (the file changed?)",
                buf.len(),
                bytes.length()
            )));
        }
        bytes.copy_to(buf);
        self.read.set(self.read.get() + buf.len() as u64);
        if let Some(report) = self.progress.borrow().as_ref() {
            report(self.read.get());
        }
        Ok(())
    }
}
