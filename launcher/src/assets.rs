//! The built app (`dist/`), embedded in the binary, or read from a folder at each request.

use std::path::Path;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../dist/"]
struct Dist;

/// The MIME type of a served file. `application/wasm` matters: without it browsers refuse
/// `WebAssembly.instantiateStreaming`.
pub fn mime_for(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("wasm") => "application/wasm",
        Some("js" | "mjs") => "text/javascript",
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css",
        Some("json") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("gguf") => "application/octet-stream",
        _ => "application/octet-stream",
    }
}

/// Serves one file of the app, embedded or from `app_dir`; `path` is already checked (no `..`,
/// no leading `/`).
pub fn serve(app_dir: Option<&Path>, path: &str, request_headers: &HeaderMap) -> Response {
    let path = if path.is_empty() { "index.html" } else { path };
    let file = match app_dir {
        None => Dist::get(path).map(|file| (file.data.into_owned(), hex(&file.metadata.sha256_hash()[..16]))),
        Some(dir) => from_folder(&dir.join(path)),
    };
    let Some((data, tag)) = file else {
        return (StatusCode::NOT_FOUND, format!("not found: /{path}\n")).into_response();
    };
    let etag = format!("\"{tag}\"");
    if request_headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == etag.as_bytes()) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let mut response = Response::new(Body::from(data));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime_for(path)));
    // Revalidate every time: a rebuilt app must not mix old and new wasm.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    response
}

/// A file of an app folder and its entity tag (its size and modification time: the folder
/// is a developer's build, rewritten in place).
fn from_folder(path: &Path) -> Option<(Vec<u8>, String)> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    let since = modified.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let data = std::fs::read(path).ok()?;
    let tag = format!("{:x}-{:x}", data.len(), since.as_nanos());
    Some((data, tag))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Paths of every embedded file, for tests and diagnostics.
pub fn files() -> impl Iterator<Item = String> {
    Dist::iter().map(|p| p.into_owned())
}
