//! Helpers for the end-to-end tests: the real `hearth` binary, ChromeDriver, and headless
//! Chromium with WebGPU on SwiftShader (flags from shared/DESIGN.md).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

pub use hearth::chromium::Process;

/// The `hearth` binary built beside this test (scripts/build-app.sh builds it).
pub fn hearth_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/");
    let bin = dir.join("hearth");
    assert!(bin.is_file(), "{} is missing: build it with `cargo build -p hearth` (same profile)", bin.display());
    bin
}

/// Runs `hearth serve --port 0` and returns it with the URL it printed.
pub fn hearth_serve() -> (Process, String) {
    let mut child = Command::new(hearth_binary())
        .args(["serve", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start hearth serve");
    let stdout = child.stdout.take().expect("piped stdout");
    let process = Process(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("hearth prints its URL");
    let url = line.split_whitespace().last().unwrap_or_default().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "hearth serve printed {line:?}");
    (process, url)
}

pub use hearth::chromium::Browser;

/// Opens `url` in a fresh headless Chromium (WebGPU on SwiftShader).
pub async fn open_in_chromium(url: &str) -> Browser {
    Browser::open(url).await.unwrap_or_else(|e| panic!("{e}"))
}
