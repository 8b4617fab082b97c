//! The OpenAI-compatible API of `hearth serve --headless`, driven by the official `openai`
//! Python client, unchanged (tests/openai/check_api.py; scripts/setup.sh installs the client):
//! every endpoint with and without streaming, response_format, tools in OpenAI's shapes, and
//! bad requests answered 400 with OpenAI's error body — natively, and with the engine in the
//! app's page in headless Chromium and in headless Servo.

use std::path::PathBuf;
use std::process::Command;

use hearth_api::catalog::models_dir;
use hearth_tests::{Process, hearth_binary, hearth_serve_with, serve_with, servo_binary};

/// The Python with the `openai` client, from scripts/setup.sh.
fn python() -> PathBuf {
    let home = models_dir().parent().expect("the cache folder").to_path_buf();
    let python = home.join("openai-venv/bin/python");
    assert!(python.is_file(), "{} is missing: run scripts/setup.sh", python.display());
    python
}

/// `hearth serve --headless --port 0 ARGS`, once its API answers: the process and its URL.
fn serve_headless(args: &[&str]) -> (Process, String) {
    hearth_serve_with(&[&["--headless"], args].concat(), "OpenAI-compatible API on")
}

/// What `hearth generate` completes "The capital of France is" with, greedy, in 8 tokens.
fn native_completion() -> String {
    let out = Command::new(hearth_binary())
        .args(["generate", "--prompt", "The capital of France is", "--max-tokens", "8", "--backend", "cpu", "--json"])
        .output()
        .expect("run hearth generate");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    done["text"].as_str().expect("text").to_string()
}

fn check_api(url: &str, mode: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/openai/check_api.py");
    let out = Command::new(python()).args([script, url, mode, &native_completion()]).output().expect("run python");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "the openai client found a problem:\n{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_openai_client_works_against_the_native_engine() {
    let (_server, url) = serve_headless(&["--engine", "native", "--backend", "cpu"]);
    check_api(&url, "full");
}

#[test]
fn the_openai_client_works_against_the_engine_in_chromium() {
    let (_server, url) = serve_headless(&["--engine", "chromium", "--backend", "cpu"]);
    check_api(&url, "page");
}

#[test]
fn the_openai_client_works_against_the_engine_in_servo() {
    let args = ["--headless", "--engine", "servo", "--backend", "cpu"];
    let (_server, url) = serve_with(&servo_binary(), &args, "OpenAI-compatible API on");
    check_api(&url, "page");
}

#[test]
fn bad_serve_arguments_are_one_line_errors() {
    let run = |args: &[&str]| Command::new(hearth_binary()).args(args).output().expect("run hearth");
    let unknown = run(&["serve", "--headless", "--engine", "gecko", "--port", "0"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("gecko"), "{unknown:?}");

    let missing = run(&["serve", "--headless", "--engine", "native", "--model", "/nonexistent.gguf", "--port", "0"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent.gguf"), "{missing:?}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = taken.local_addr().unwrap().port().to_string();
    let busy = run(&["serve", "--port", &port]);
    assert_eq!(busy.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&busy.stderr).contains(&port), "{busy:?}");
}

/// Sends `head` (and `body`) on a fresh connection, then waits: returns what the server
/// answered before it closed the connection, as text. Our side gives up after 60 s, far past
/// the server's limits, so a server that never cuts the client off fails the test.
fn raw_exchange(url: &str, head: &str, body: &[u8]) -> String {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    // The server may refuse before reading the whole body; a failed write is part of that.
    let _ = stream.write_all(body);
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server kept the connection open: {e} (answered {:?})", String::from_utf8_lossy(&answer)),
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// The limits SECURITY.md states: bodies over 1 MiB are refused with 413 and OpenAI's error
/// body; a client that sends its headers or its body too slowly is cut off (10 s each).
#[test]
fn oversized_and_slow_requests_are_refused() {
    let (_server, url) = serve_headless(&["--engine", "native", "--backend", "cpu"]);
    let host = url.trim_start_matches("http://").trim_end_matches('/');

    let big = format!("{{\"model\": \"x\", \"prompt\": \"{}\"}}", "a".repeat(2 << 20));
    let head = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        big.len()
    );
    let answer = raw_exchange(&url, &head, big.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"code\":\"request_too_large\"") && answer.contains("1048576 bytes"), "{answer}");

    // Headers that never end: the connection is closed without an answer.
    let answer = raw_exchange(&url, &format!("GET /v1/models HTTP/1.1\r\nHost: {host}\r\n"), b"");
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");

    // A body that stops short of its length: 408.
    let head = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\nConnection: close\r\n\r\n"
    );
    let answer = raw_exchange(&url, &head, b"{\"model\":");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // And the server still answers well-formed requests.
    let answer =
        raw_exchange(&url, &format!("GET /v1/models HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"), b"");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// POSTs `body` as JSON to `path` and returns the answer's JSON body.
fn post_json(url: &str, path: &str, body: &serde_json::Value) -> serde_json::Value {
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    let body = body.to_string();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let answer = raw_exchange(url, &head, body.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (_, json) = answer.split_once("\r\n\r\n").expect("a body");
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

/// The engine holds the whole model in memory: once loaded, the file on disk may change or go
/// and the server answers as before; a new start on the changed file says what is wrong with it.
#[test]
fn the_model_file_can_change_or_vanish_while_loaded() {
    let files = tempfile::tempdir().unwrap();
    let model = files.path().join("model.gguf");
    let shipped = models_dir().join(hearth_api::catalog::DEFAULT_MODEL.file);
    std::fs::copy(&shipped, &model).expect("the default model (scripts/setup.sh fetches it)");
    let (server, url) = serve_headless(&["--engine", "native", "--backend", "cpu", "--model", model.to_str().unwrap()]);
    let ask = || {
        let request = serde_json::json!({
            "model": "model", "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0
        });
        post_json(&url, "/v1/completions", &request)["choices"][0]["text"].as_str().expect("a completion").to_string()
    };
    let before = ask();
    // Changed in place: cut to its first half (a copy interrupted, a download resumed...).
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(ask(), before, "the loaded model answers as before");
    std::fs::remove_file(&model).unwrap();
    assert_eq!(ask(), before, "and after its file is gone");
    drop(server);

    // The next start reads what is there now, and names the problem.
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    let out = Command::new(hearth_binary())
        .args(["serve", "--headless", "--engine", "native", "--port", "0", "--model"])
        .arg(&model)
        .output()
        .expect("run hearth");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("model.gguf") && stderr.contains("runs past the end of the file"), "{stderr}");
}
