//! Whether a model fits this page, from the first bytes of its file, before the rest is read:
//! a model too large for wasm32's 4 GiB is refused with both numbers and the largest context
//! that would fit, nothing of it is downloaded or copied, and the model loaded already stays.
//!
//! The page's memory is counted by the runtime's allocator ([`CountingAlloc`]), so what the
//! model already loaded holds counts against the new one (both are alive while it loads).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use hearth_core::engine::Backend;
use hearth_core::gguf::{ByteSource, Gguf, GgufError};
use hearth_core::memory_plan::{ByteCount, MemoryPlan};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

/// Bytes of linear memory a wasm32 module can have.
const WASM32_LIMIT: u64 = 4 << 30;

/// The system allocator, counting the bytes it has given out and not had back.
pub struct CountingAlloc;

static ALLOCATED: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed to `System` unchanged; only a counter is kept beside it.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        ALLOCATED.fetch_sub(layout.size() as u64, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            ALLOCATED.fetch_sub(layout.size() as u64, Ordering::Relaxed);
            ALLOCATED.fetch_add(new_size as u64, Ordering::Relaxed);
        }
        p
    }
}

/// Bytes the runtime's allocator has given out and not had back.
pub fn allocated() -> u64 {
    ALLOCATED.load(Ordering::Relaxed)
}

/// Bytes of wasm memory this page can still allocate.
fn available() -> u64 {
    WASM32_LIMIT.saturating_sub(allocated())
}

/// The first bytes of a file of `len` bytes: enough to read its header, not its tensors.
struct Prefix<'a> {
    bytes: &'a [u8],
    len: u64,
}

impl ByteSource for Prefix<'_> {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), GgufError> {
        self.bytes.read_exact_at(offset, buf)
    }
}

/// Header bytes read before giving up on a check (Gemma 3's 262k-token header is about 6 MB).
const PREFIXES: [u64; 2] = [8 << 20, 32 << 20];

/// What reading a prefix of the file told.
enum Checked {
    /// The prefix ends inside the header.
    NeedMore,
    /// The model fits (or the load will say what is wrong with the file), with its plan where
    /// the header could be read.
    Fits(Option<MemoryPlan>),
}

/// `Err` with one line when the model whose file starts with `prefix` (of `total` bytes in all)
/// cannot fit this page at `n_ctx` positions on `backend`. On the CPU the whole plan is in wasm
/// memory; onto the GPU the weights go a tensor at a time, so wasm memory holds at most two
/// copies of the largest (read, and rearranged for upload). WebGPU tells nothing of the
/// device's memory: there the load says what did not fit.
fn check_prefix(prefix: &[u8], total: u64, n_ctx: usize, backend: Backend) -> Result<Checked, String> {
    let g = match Gguf::read(&Prefix { bytes: prefix, len: total }) {
        Ok(g) => g,
        Err(GgufError::Io(_) | GgufError::Truncated { .. }) if (prefix.len() as u64) < total => {
            return Ok(Checked::NeedMore);
        }
        // Whatever else is wrong with the file, the load says it in full.
        Err(_) => return Ok(Checked::Fits(None)),
    };
    let Ok(plan) = MemoryPlan::new(&g, backend, n_ctx) else { return Ok(Checked::Fits(None)) };
    let in_use = ByteCount(allocated());
    let limit = format!("this page's free wasm32 memory (4 GiB less {in_use} in use)");
    match backend {
        Backend::Cpu => plan.check(available(), &limit).map_err(|e| e.to_string())?,
        Backend::Gpu if 2 * plan.largest_tensor > available() => {
            return Err(format!(
                "loading onto the GPU holds the model's largest tensor twice ({}) but {limit} is {}",
                ByteCount(2 * plan.largest_tensor),
                ByteCount(available())
            ));
        }
        Backend::Gpu => {}
    }
    Ok(Checked::Fits(Some(plan)))
}

/// Checks that the model fits on `backend`, reading only its header: `open(n)` gives a
/// response whose body starts with at least the file's first `n` bytes (or all of it), and the
/// file's size. Returns its plan where the header could be read. A source that cannot be read
/// this way is not checked here (the load reads it and says what is wrong).
pub async fn check(
    mut open: impl AsyncFnMut(u64) -> Option<(web_sys::Response, u64)>,
    n_ctx: usize,
    backend: Backend,
) -> Result<Option<MemoryPlan>, String> {
    for want in PREFIXES {
        let Some((response, total)) = open(want).await else { return Ok(None) };
        let Some(prefix) = read_prefix(response, want).await else { return Ok(None) };
        match check_prefix(&prefix, total, n_ctx, backend)? {
            Checked::Fits(plan) => return Ok(plan),
            Checked::NeedMore if prefix.len() as u64 >= total => break,
            Checked::NeedMore => {}
        }
    }
    Ok(None)
}

/// The first `want` bytes of `response`'s body (fewer if it is shorter); the rest is not read
/// (the stream is cancelled). `None` if reading fails.
async fn read_prefix(response: web_sys::Response, want: u64) -> Option<Vec<u8>> {
    let reader: web_sys::ReadableStreamDefaultReader = response.body()?.get_reader().unchecked_into();
    let mut bytes = Vec::new();
    while (bytes.len() as u64) < want {
        let chunk = JsFuture::from(reader.read()).await.ok()?;
        if js_sys::Reflect::get(&chunk, &JsValue::from_str("done")).is_ok_and(|d| d.is_truthy()) {
            break;
        }
        let value = js_sys::Reflect::get(&chunk, &JsValue::from_str("value")).ok()?;
        let array: js_sys::Uint8Array = value.dyn_into().ok()?;
        let start = bytes.len();
        bytes.resize(start + array.length() as usize, 0);
        array.copy_to(&mut bytes[start..]);
    }
    // Not awaited: the rest of the body is not wanted, whenever the stream lets it go.
    let _ = reader.cancel();
    bytes.truncate(want as usize);
    Some(bytes)
}
