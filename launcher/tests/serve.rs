//! `hearth serve` as a user runs it: the real binary, real sockets, raw HTTP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Server {
    child: Child,
    port: u16,
    _home: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `hearth serve --port 0` with a model cache holding one small file.
fn start() -> Server {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("models")).unwrap();
    std::fs::write(home.path().join("models/tiny.gguf"), b"GGUF0123456789").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["serve", "--port", "0"])
        .env("HEARTH_HOME", home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let url = first.trim().rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "printed {first:?}");
    let port = url.trim_start_matches("http://127.0.0.1:").trim_end_matches('/').parse().unwrap();
    Server { child, port, _home: home }
}

/// Sends one raw HTTP/1.1 request (so paths reach the server exactly as written) and returns
/// (status, lower-cased headers, body).
fn request(port: u16, path: &str, host: &str, extra: &str) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete response");
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, raw[split + 4..].to_vec())
}

fn get(port: u16, path: &str) -> (u16, String, Vec<u8>) {
    request(port, path, &format!("127.0.0.1:{port}"), "")
}

#[test]
fn serves_the_app_cross_origin_isolated_with_the_right_types() {
    let s = start();
    let (status, head, body) = get(s.port, "/");
    assert_eq!(status, 200);
    assert!(head.contains("cross-origin-opener-policy: same-origin"), "{head}");
    assert!(head.contains("cross-origin-embedder-policy: require-corp"), "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    let html = String::from_utf8(body).unwrap();
    let wasm = html.split('"').find(|s| s.ends_with(".wasm")).expect("index.html names the app's wasm");
    let (status, head, body) = get(s.port, &format!("/{}", wasm.trim_start_matches('/')));
    assert_eq!(status, 200, "{wasm}");
    assert!(head.contains("content-type: application/wasm"), "{head}");
    assert_eq!(&body[..4], b"\0asm");
    for runtime in ["threaded", "single"] {
        let (status, head, body) = get(s.port, &format!("/runtime/{runtime}/hearth_workers_bg.wasm"));
        assert_eq!(status, 200, "{runtime}");
        assert!(head.contains("application/wasm"), "{head}");
        assert_eq!(&body[..4], b"\0asm");
        let (status, head, _) = get(s.port, &format!("/runtime/{runtime}/hearth_workers.js"));
        assert_eq!(status, 200);
        assert!(head.contains("content-type: text/javascript"), "{head}");
    }
    let (status, head, _) = get(s.port, "/engine-worker.js");
    assert_eq!(status, 200);
    assert!(head.contains("cross-origin-embedder-policy: require-corp"), "{head}");
    assert_eq!(get(s.port, "/no-such-file.js").0, 404);
}

#[test]
fn serves_models_from_the_cache_with_ranges() {
    let s = start();
    let (status, _, body) = get(s.port, "/models/tiny.gguf");
    assert_eq!((status, body.as_slice()), (200, &b"GGUF0123456789"[..]));
    let (status, _, body) = request(s.port, "/models/tiny.gguf", "localhost", "Range: bytes=4-7\r\n");
    assert_eq!((status, body.as_slice()), (206, &b"0123"[..]));
    assert_eq!(get(s.port, "/models/absent.gguf").0, 404);
}

#[test]
fn refuses_paths_outside_the_served_roots() {
    let s = start();
    for path in [
        "/../Cargo.toml",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "/models/../../../etc/passwd",
        "/models/%2e%2e/%2e%2e/etc/passwd",
        "/models/..%5c..%5cetc%5cpasswd",
        "//etc/passwd",
        "/%2fetc/passwd",
        "/models//etc/passwd",
        "/runtime/./threaded/hearth_workers.js",
    ] {
        let (status, _, body) = get(s.port, path);
        assert_eq!(status, 400, "{path}: {}", String::from_utf8_lossy(&body));
        assert!(!String::from_utf8_lossy(&body).contains("root:"), "{path}");
    }
}

#[test]
fn refuses_hosts_that_are_not_loopback() {
    let s = start();
    for host in ["evil.example", "evil.example:80", "localhost.evil.example", "192.168.1.10", "0.0.0.0"] {
        assert_eq!(request(s.port, "/", host, "").0, 403, "{host}");
    }
    for host in ["localhost", &format!("localhost:{}", s.port), "127.0.0.1", "[::1]"] {
        assert_eq!(request(s.port, "/", host, "").0, 200, "{host}");
    }
}

/// hearth::server::MAX_CONNECTIONS, as a user of the binary sees it.
const MAX_CONNECTIONS: usize = 128;

#[test]
fn connections_past_the_cap_are_answered_503_and_the_server_recovers() {
    let s = start();
    // Clients that connect and say nothing hold every slot (until the header timeout).
    let idle: Vec<TcpStream> =
        (0..MAX_CONNECTIONS).map(|_| TcpStream::connect(("127.0.0.1", s.port)).unwrap()).collect();
    // The server accepts in order, so this one comes after all of them.
    let (status, _, body) = get(s.port, "/");
    assert_eq!(status, 503);
    let body = String::from_utf8_lossy(&body).into_owned();
    assert!(body.contains(&format!("at most {MAX_CONNECTIONS}")), "{body}");
    // Once they go, the slots are free again.
    drop(idle);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status = get(s.port, "/").0;
        if status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {status} after the idle clients left");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_hearth(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth")).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_ports_are_one_line_errors_with_exit_code_2() {
    for port in ["abc", "70000", "-1", ""] {
        let (code, stderr) = run_hearth(&["serve", &format!("--port={port}")]);
        assert_eq!(code, 2, "--port {port:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "--port {port:?}: {stderr}");
        assert!(stderr.contains("--port"), "{stderr}");
    }
}

#[test]
fn a_busy_port_is_a_one_line_error_with_exit_code_2() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, stderr) = run_hearth(&["serve", "--port", &port]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")) && stderr.contains("in use"), "{stderr}");
}
