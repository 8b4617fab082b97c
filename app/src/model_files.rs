//! GGUF files the user adds from disk, kept in the origin private file system (OPFS) under
//! [`OPFS_MODELS_DIR`] so they survive reloads until deleted. Copying runs in slices through
//! the browser's writable stream, so the page never holds the whole file.

use hearth_api::catalog::OPFS_MODELS_DIR;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{File, FileSystemDirectoryHandle, FileSystemFileHandle, FileSystemGetDirectoryOptions};

/// A model file kept in this browser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredModel {
    pub name: String,
    pub size: u64,
}

/// Bytes copied per write: large enough to be quick, small enough not to hold much.
const SLICE: f64 = 16.0 * 1024.0 * 1024.0;

/// What a JS error (or any thrown value) says.
pub fn error_text(e: &JsValue) -> String {
    e.as_string()
        .or_else(|| e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())))
        .unwrap_or_else(|| format!("{e:?}"))
}

async fn wait(promise: js_sys::Promise) -> Result<JsValue, String> {
    JsFuture::from(promise).await.map_err(|e| error_text(&e))
}

/// The OPFS folder of added models, made if missing; an error says why there is none (engines
/// without OPFS, or a page that is not a secure context).
async fn models_folder() -> Result<FileSystemDirectoryHandle, String> {
    let navigator = web_sys::window().ok_or("no window")?.navigator();
    let storage = js_sys::Reflect::get(&navigator, &JsValue::from_str("storage")).unwrap_or(JsValue::UNDEFINED);
    let has_opfs = !storage.is_undefined()
        && js_sys::Reflect::get(&storage, &JsValue::from_str("getDirectory")).is_ok_and(|f| f.is_function());
    if !has_opfs {
        return Err("this browser has no origin private file system".into());
    }
    let root: FileSystemDirectoryHandle = wait(navigator.storage().get_directory()).await?.unchecked_into();
    let options = FileSystemGetDirectoryOptions::new();
    options.set_create(true);
    Ok(wait(root.get_directory_handle_with_options(OPFS_MODELS_DIR, &options)).await?.unchecked_into())
}

/// Whether this browser can keep added models (else they are loaded for the session only).
pub async fn available() -> Result<(), String> {
    models_folder().await.map(|_| ())
}

/// Whether this origin may store `size` more bytes: asks the browser to keep its storage
/// (`persist()`: not evicted under pressure), then compares with what `estimate()` leaves of
/// the quota. An error names both numbers; where the browser does not say, the copy is tried.
pub async fn room_for(name: &str, size: u64) -> Result<(), String> {
    let Some(navigator) = web_sys::window().map(|w| w.navigator()) else { return Ok(()) };
    let storage = navigator.storage();
    let call = |method: &str| -> Option<js_sys::Promise> {
        let f: js_sys::Function = js_sys::Reflect::get(&storage, &JsValue::from_str(method)).ok()?.dyn_into().ok()?;
        f.call0(&storage).ok()?.dyn_into().ok()
    };
    if let Some(persist) = call("persist") {
        // Refused or granted, the copy goes on; a persistent origin's quota is larger.
        let _ = wait(persist).await;
    }
    let Some(estimate) = call("estimate") else { return Ok(()) };
    let Ok(estimate) = wait(estimate).await else { return Ok(()) };
    let number = |key| js_sys::Reflect::get(&estimate, &JsValue::from_str(key)).ok().and_then(|v| v.as_f64());
    let (Some(quota), Some(usage)) = (number("quota"), number("usage")) else { return Ok(()) };
    let free = (quota - usage).max(0.0) as u64;
    if size > free {
        let mb = |b: u64| format!("{:.0} MB", b as f64 / 1e6);
        return Err(format!(
            "{name} is {} but this browser lets this app store {} more (quota {}, {} used)",
            mb(size),
            mb(free),
            mb(quota as u64),
            mb(usage as u64)
        ));
    }
    Ok(())
}

/// The models kept in this browser, by name.
pub async fn list() -> Result<Vec<StoredModel>, String> {
    let folder = models_folder().await?;
    let entries = folder.values();
    let mut models = Vec::new();
    loop {
        let next = wait(entries.next().map_err(|e| error_text(&e))?).await?;
        if js_sys::Reflect::get(&next, &JsValue::from_str("done")).is_ok_and(|d| d.is_truthy()) {
            break;
        }
        let Ok(handle) = js_sys::Reflect::get(&next, &JsValue::from_str("value")) else { continue };
        let Ok(handle) = handle.dyn_into::<FileSystemFileHandle>() else { continue };
        let file: File = wait(handle.get_file()).await?.unchecked_into();
        models.push(StoredModel { name: file.name(), size: file.size() as u64 });
    }
    models.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(models)
}

/// Checks that `file` starts like a GGUF file, before anything is copied.
pub async fn check_gguf(file: &File) -> Result<(), String> {
    let head = file.slice_with_f64_and_f64(0.0, 4.0).map_err(|e| error_text(&e))?;
    let bytes = js_sys::Uint8Array::new(&wait(head.array_buffer()).await?).to_vec();
    if bytes != b"GGUF" {
        return Err(format!(
            "{} is not a GGUF file: it starts with {:?}, not \"GGUF\"",
            file.name(),
            String::from_utf8_lossy(&bytes)
        ));
    }
    Ok(())
}

/// Copies `file` into the OPFS folder (replacing one of the same name), reporting bytes
/// copied; a failed copy leaves no partial file behind.
pub async fn store(file: &File, mut progress: impl FnMut(u64)) -> Result<StoredModel, String> {
    let folder = models_folder().await?;
    let name = file.name();
    let options = web_sys::FileSystemGetFileOptions::new();
    options.set_create(true);
    let handle: FileSystemFileHandle = wait(folder.get_file_handle_with_options(&name, &options))
        .await
        .map_err(|e| format!("cannot keep {name} here: {e}"))?
        .unchecked_into();
    let copied = async {
        let writable: web_sys::FileSystemWritableFileStream = wait(handle.create_writable()).await?.unchecked_into();
        let size = file.size();
        let mut offset = 0.0;
        while offset < size {
            let end = (offset + SLICE).min(size);
            let slice = file.slice_with_f64_and_f64(offset, end).map_err(|e| error_text(&e))?;
            wait(writable.write_with_blob(&slice).map_err(|e| error_text(&e))?).await?;
            offset = end;
            progress(offset as u64);
        }
        wait(writable.close()).await?;
        Ok::<_, String>(size as u64)
    }
    .await;
    match copied {
        Ok(size) => Ok(StoredModel { name, size }),
        Err(e) => {
            let _ = wait(folder.remove_entry(&name)).await;
            Err(format!("copying {name} failed: {e}"))
        }
    }
}

/// Deletes a kept model.
pub async fn delete(name: &str) -> Result<(), String> {
    let folder = models_folder().await?;
    wait(folder.remove_entry(name)).await.map(|_| ()).map_err(|e| format!("cannot delete {name}: {e}"))
}
