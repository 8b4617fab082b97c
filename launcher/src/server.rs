//! `hearth serve`: the built app and the model cache over HTTP on loopback only.
//!
//! Every response carries the cross-origin-isolation headers (SharedArrayBuffer needs them).
//! Requests are refused unless their Host is a loopback name (DNS rebinding), any Origin they
//! carry is a loopback origin (another site's page calling the API), and their path stays inside
//! the served roots (`..`, encoded or not, and absolute paths). With `--headless`, `/v1/` is the
//! OpenAI-compatible API ([`crate::openai`]). Slow clients are cut off: headers must arrive
//! within [`HEADER_READ_TIMEOUT`], a body within [`BODY_READ_TIMEOUT`]; and at most
//! [`MAX_CONNECTIONS`] are open at once (more are answered 503 and closed).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hearth_api::catalog::models_dir;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use thiserror::Error;
use tokio::net::TcpListener;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::assets;
use crate::openai::{self, Api};

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind { port: u16, source: std::io::Error },
}

/// What the server serves.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Folder served under `/models/` (see [`hearth_api::catalog::models_dir`]).
    pub models_dir: PathBuf,
    /// Send COOP/COEP. Only tests turn this off, to see the page fall back to the
    /// single-threaded build the way it must in engines without shared memory.
    pub cross_origin_isolation: bool,
    /// Serve the app from this folder (a `dist/` built by scripts/build-app.sh), read at each
    /// request, rather than the copy embedded in the binary.
    pub app_dir: Option<PathBuf>,
    /// A model file from the command line, served under `/models/` beside the models folder.
    pub session_model: Option<SessionModel>,
}

impl ServeOptions {
    /// The models folder and the embedded app, isolated: what every command serves.
    pub fn new(session_model: Option<SessionModel>) -> Self {
        Self { models_dir: models_dir(), cross_origin_isolation: true, app_dir: None, session_model }
    }
}

/// A model file served as `/models/<name>` for this run only: `--model FILE` with a page
/// engine, whatever folder the file is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionModel {
    /// The name the page asks for, `<id>.gguf`, of characters a URL path keeps as they are.
    pub name: String,
    pub path: PathBuf,
}

/// Binds 127.0.0.1 (never 0.0.0.0). Port 0 picks a free port.
pub async fn bind(port: u16) -> Result<TcpListener, ServeError> {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .map_err(|source| ServeError::Bind { port, source })
}

/// The app, the model cache, and the API when there is one.
pub fn router(options: ServeOptions, api: Option<Arc<Api>>) -> Router {
    let models = ServeDir::new(&options.models_dir);
    let app_dir = options.app_dir.clone();
    let api = match api {
        Some(api) => openai::router(api),
        None => Router::new().fallback(|| async {
            openai::error(
                StatusCode::NOT_FOUND,
                "not_found",
                None,
                "the API is served by `hearth serve --headless`".to_string(),
            )
        }),
    };
    let mut router = Router::new();
    if let Some(model) = &options.session_model {
        // A static route wins over the models folder's wildcard.
        router = router.route_service(&format!("/models/{}", model.name), ServeFile::new(&model.path));
    }
    router
        .nest("/v1", api)
        .nest_service("/models", models)
        .fallback(move |request| serve_asset(app_dir.clone(), request))
        .layer(middleware::from_fn_with_state(options, guard))
}

/// Longest a client may take to send a request's headers; then the connection is closed
/// (a slow client cannot hold connections open for ever).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest a request's body may take to arrive once its headers have; then HTTP 408.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Most connections open at once. A browser opens six per host, so this leaves room for the
/// app, API clients and benchmarks, while a client that opens connections without end cannot
/// exhaust the process's file descriptors.
pub const MAX_CONNECTIONS: usize = 128;

/// The whole answer to a connection past [`MAX_CONNECTIONS`], written before it is closed.
fn too_many_connections() -> Vec<u8> {
    let body = format!("too many open connections (at most {MAX_CONNECTIONS}): retry later\n");
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n\
         retry-after: 1\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// How long shutting down waits for open connections (a reply streaming, say).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Runs until `shutdown` resolves. Each connection is HTTP/1.1 through hyper with a header
/// read timeout, which `axum::serve` does not set.
pub async fn serve(
    listener: TcpListener,
    options: ServeOptions,
    api: Option<Arc<Api>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let app = router(options, api).layer(RequestBodyTimeoutLayer::new(BODY_READ_TIMEOUT));
    let connections = GracefulShutdown::new();
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let mut stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors, say: the next accept may work.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                // Answer, then read what the client sent (briefly) before closing: closing on
                // unread bytes resets the connection, and the client would never see the answer.
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    stream.write_all(&too_many_connections()).await?;
                    stream.shutdown().await?;
                    let mut sink = [0u8; 4096];
                    while stream.read(&mut sink).await? > 0 {}
                    std::io::Result::Ok(())
                })
                .await;
            });
            continue;
        };
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            // A client that goes away or times out ends only its own connection.
            let _ = connection.await;
            drop(permit);
        });
    }
    tokio::select! {
        () = connections.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {}
    }
    Ok(())
}

async fn serve_asset(app_dir: Option<PathBuf>, request: Request) -> Response {
    // The guard has vetted the path; strip the leading slash to get the embedded name.
    let path = request.uri().path().trim_start_matches('/');
    match decode_path(path) {
        Ok(path) => assets::serve(app_dir.as_deref(), &path, request.headers()),
        Err(why) => refuse(StatusCode::BAD_REQUEST, why),
    }
}

/// Refuses foreign hosts and escaping paths, then adds the isolation headers to whatever the
/// inner service answers.
async fn guard(State(options): State<ServeOptions>, request: Request, next: Next) -> Response {
    let host = request
        .uri()
        .host()
        .map(str::to_string)
        .or_else(|| request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string));
    match host {
        Some(host) if is_loopback_host(&host) => {}
        Some(host) => return refuse(StatusCode::FORBIDDEN, format!("host {host:?} is not a loopback name")),
        None => return refuse(StatusCode::BAD_REQUEST, "missing Host header".to_string()),
    }
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        if !is_loopback_origin(origin) {
            return refuse(StatusCode::FORBIDDEN, format!("origin {origin:?} is not a loopback origin"));
        }
    }
    if let Err(why) = decode_path(request.uri().path()).and_then(|p| check_path(&p)) {
        return refuse(StatusCode::BAD_REQUEST, why);
    }

    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if options.cross_origin_isolation {
        headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
        headers.insert("cross-origin-embedder-policy", HeaderValue::from_static("require-corp"));
    }
    headers.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}

fn refuse(status: StatusCode, why: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], Body::from(format!("{why}\n"))).into_response()
}

fn decode_path(raw: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|p| p.into_owned())
        .map_err(|_| format!("path {raw:?} is not UTF-8"))
}

/// A decoded request path is served only if it cannot name anything outside the served roots.
pub fn check_path(path: &str) -> Result<(), String> {
    let inner = path.strip_prefix('/').unwrap_or(path);
    let escapes = inner.contains("//")
        || inner.starts_with('/')
        || inner.contains('\\')
        || inner.contains('\0')
        || inner.split('/').any(|segment| segment == ".." || segment == ".")
        || inner.split('/').next().is_some_and(|first| first.len() >= 2 && first.as_bytes()[1] == b':');
    if escapes { Err(format!("path {path:?} leaves the served folder")) } else { Ok(()) }
}

/// `http://` or `https://` and a loopback host: the app's own pages. (`null`, sent by sandboxed
/// and file pages, is foreign.)
pub fn is_loopback_origin(origin: &str) -> bool {
    let host = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
    host.is_some_and(|host| !host.contains('/') && is_loopback_host(host))
}

/// `localhost`, `127.0.0.0/8` or `[::1]`, with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, tail)) if tail.is_empty() || tail.starts_with(':') => v6,
            _ => return false,
        }
    } else {
        host.rsplit_once(':').map_or(
            host,
            |(name, port)| {
                if port.chars().all(|c| c.is_ascii_digit()) { name } else { host }
            },
        )
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
        || name.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        for ok in ["localhost", "LOCALHOST:8417", "127.0.0.1", "127.0.0.1:80", "127.9.9.9:1", "[::1]", "[::1]:8417"] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8417",
            "localhost.evil.example",
            "128.0.0.1",
            "0.0.0.0",
            "10.0.0.1:80",
            "[::2]",
            "[::1]x",
            "::1",
            "127.0.0.1.nip.io",
            "",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn loopback_origins_are_recognised() {
        for ok in ["http://127.0.0.1:8417", "http://localhost", "https://[::1]:9"] {
            assert!(is_loopback_origin(ok), "{ok}");
        }
        for bad in [
            "null",
            "http://evil.example",
            "http://127.0.0.1.evil.example",
            "file://",
            "127.0.0.1",
            "http://127.0.0.1/x",
        ] {
            assert!(!is_loopback_origin(bad), "{bad}");
        }
    }

    #[test]
    fn escaping_paths_are_refused() {
        for bad in ["/../etc/passwd", "/a/../../b", "/..", "//etc/passwd", "/a\\..\\b", "/./x", "/C:/x", "/x\0"] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
        for ok in ["/", "/index.html", "/runtime/threaded/hearth_workers.js", "/models/a.gguf", "/a..b", "/..a"] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
    }
}

#[cfg(test)]
mod bind_tests {
    #[tokio::test]
    async fn binds_loopback_only() {
        let listener = super::bind(0).await.unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(addr.ip().is_loopback() && !addr.ip().is_unspecified(), "{addr}");
    }
}
