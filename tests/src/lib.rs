//! Helpers for the end-to-end tests: the real `hearth` binary, ChromeDriver, and headless
//! Chromium with WebGPU on SwiftShader (flags from shared/DESIGN.md).

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};

/// A child process killed when dropped.
pub struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

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

/// ChromeDriver on a free port, ready to take sessions.
pub fn chromedriver() -> (Process, String) {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver on PATH (Debian package chromium-driver; scripts/setup.sh installs it)");
    let process = Process(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (process, format!("http://127.0.0.1:{port}"))
}

/// A headless Chromium session with WebGPU on SwiftShader and a fresh profile.
pub async fn chromium(driver: &str, profile: &tempfile::TempDir) -> Client {
    let args = [
        "--headless=new",
        "--no-sandbox",
        "--enable-unsafe-webgpu",
        "--enable-features=Vulkan",
        "--use-vulkan=swiftshader",
        "--use-webgpu-adapter=swiftshader",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        "--disable-dev-shm-usage",
        "--window-size=1280,1100",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.path().display())])
    .collect::<Vec<_>>();
    let caps = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args },
    });
    let serde_json::Value::Object(caps) = caps else { unreachable!() };
    ClientBuilder::rustls().expect("rustls").capabilities(caps).connect(driver).await.expect("a Chromium session")
}

/// A headless Chromium session with its ChromeDriver and profile, all gone when dropped.
pub struct Browser {
    pub client: Client,
    _driver: Process,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Ends the WebDriver session (closing Chromium) before the driver goes.
    pub async fn close(self) {
        self.client.close().await.expect("close the Chromium session");
    }
}

/// Opens `url` in a fresh headless Chromium.
pub async fn open_in_chromium(url: &str) -> Browser {
    let (driver, driver_url) = chromedriver();
    let profile = tempfile::tempdir().expect("a temporary profile folder");
    let client = chromium(&driver_url, &profile).await;
    client.goto(url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
    Browser { client, _driver: driver, _profile: profile }
}
