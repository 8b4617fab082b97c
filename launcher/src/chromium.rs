//! Headless Chromium driven over WebDriver (ChromeDriver), with WebGPU on SwiftShader (flags
//! from shared/DESIGN.md): how `hearth bench` measures the app in a browser, and what the
//! end-to-end tests drive.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::Value;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ChromiumError {
    #[error("cannot start chromedriver ({0}); install the Debian package chromium-driver (scripts/setup.sh does)")]
    Driver(std::io::Error),
    #[error("chromedriver did not listen within {0:?}")]
    DriverTimeout(Duration),
    #[error("cannot start a Chromium session: {0}")]
    Session(String),
    #[error("WebDriver: {0}")]
    WebDriver(String),
    #[error("the page's script failed: {0}")]
    Script(String),
    #[error("the page's script did not finish within {0:?}")]
    ScriptTimeout(Duration),
    #[error("cannot make a browser profile folder: {0}")]
    Profile(std::io::Error),
}

/// A child process stopped when dropped: asked to end (SIGTERM, so it can close what it
/// opened, such as a browser), then killed if it has not within three seconds.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let asked = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status().is_ok_and(|s| s.success());
        let deadline = Instant::now() + Duration::from_secs(3);
        while asked && Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// ChromeDriver on a port it picks itself (`--port=0`, so no other process can take the port
/// between choosing and binding it), ready to take sessions.
pub fn chromedriver() -> Result<(Process, String), ChromiumError> {
    let mut child = Command::new("chromedriver")
        .arg("--port=0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(ChromiumError::Driver)?;
    let stdout = child.stdout.take();
    let process = Process(child);
    let (tx, rx) = std::sync::mpsc::channel();
    // Reads the "started successfully on port N." line, then drains what the driver prints.
    std::thread::spawn(move || {
        let Some(stdout) = stdout else { return };
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let port = line.split("on port ").nth(1).and_then(|p| p.trim_end_matches('.').parse::<u16>().ok());
            if let (Some(port), true) = (port, line.contains("successfully")) {
                let _ = tx.send(port);
            }
        }
    });
    let limit = Duration::from_secs(30);
    let port = rx.recv_timeout(limit).map_err(|_| ChromiumError::DriverTimeout(limit))?;
    Ok((process, format!("http://127.0.0.1:{port}")))
}

/// The command-line flags: headless, WebGPU on SwiftShader, nothing reaching the network.
fn chromium_args(profile: &std::path::Path) -> Vec<String> {
    [
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
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

/// A headless Chromium session with its ChromeDriver and a fresh profile, all gone when dropped.
pub struct Browser {
    pub client: Client,
    _driver: Process,
    profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// Chromium outlives a ChromeDriver that is killed, so its processes are ended by their
    /// profile folder, which is this session's alone.
    fn drop(&mut self) {
        let pattern = format!("--user-data-dir={}", self.profile.path().display());
        let _ = Command::new("pkill").args(["-f", "--", &pattern]).status();
    }
}

impl Browser {
    /// Opens `url` in a fresh headless Chromium. Starting the browser is tried three times:
    /// on a loaded machine Chromium now and then fails to come up in time.
    pub async fn open(url: &str) -> Result<Self, ChromiumError> {
        let mut attempt = 1;
        loop {
            match Self::start().await {
                Ok(browser) => {
                    browser.client.goto(url).await.map_err(|e| ChromiumError::WebDriver(format!("open {url}: {e}")))?;
                    return Ok(browser);
                }
                Err(e @ ChromiumError::Session(_)) if attempt < 3 => {
                    eprintln!("headless Chromium did not start (attempt {attempt}): {e}; trying again");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn start() -> Result<Self, ChromiumError> {
        let (driver, driver_url) = chromedriver()?;
        let profile = tempfile::tempdir().map_err(ChromiumError::Profile)?;
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": chromium_args(profile.path()) },
        });
        let Value::Object(caps) = caps else { unreachable!("a JSON object literal") };
        let client = ClientBuilder::rustls()
            .map_err(|e| ChromiumError::Session(e.to_string()))?
            .capabilities(caps)
            .connect(&driver_url)
            .await
            .map_err(|e| ChromiumError::Session(e.to_string()))?;
        Ok(Self { client, _driver: driver, profile })
    }

    /// Runs `body`, the body of an async JS function of `args`, in the page and returns what it
    /// returns. Polls, so no single WebDriver call waits long.
    pub async fn run(&self, body: &str, args: Value, limit: Duration) -> Result<Value, ChromiumError> {
        let start = format!(
            "window.__hearthJob = {{ done: false }}; \
             (async (args) => {{ {body} }})(arguments[0]) \
               .then(value => window.__hearthJob = {{ done: true, value }}, \
                     error => window.__hearthJob = {{ done: true, error: String(error) }});"
        );
        let webdriver = |e: fantoccini::error::CmdError| ChromiumError::WebDriver(e.to_string());
        self.client.execute(&start, vec![args]).await.map_err(webdriver)?;
        let deadline = Instant::now() + limit;
        loop {
            let job = self.client.execute("return window.__hearthJob;", vec![]).await.map_err(webdriver)?;
            if job["done"] == Value::Bool(true) {
                return match job.get("error") {
                    Some(error) => Err(ChromiumError::Script(error.as_str().unwrap_or_default().to_string())),
                    None => Ok(job["value"].clone()),
                };
            }
            if Instant::now() > deadline {
                return Err(ChromiumError::ScriptTimeout(limit));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the page's model has loaded; an error says why it did not.
    pub async fn wait_for_model(&self, limit: Duration) -> Result<(), ChromiumError> {
        let state = self
            .run(
                "while (!window.hearth || !['loaded', 'failed'].includes(hearth.modelState())) \
                   await new Promise(r => setTimeout(r, 100)); \
                 return hearth.modelState() === 'loaded' ? 'loaded' \
                   : document.getElementById('model-status').textContent;",
                Value::Null,
                limit,
            )
            .await?;
        match state.as_str() {
            Some("loaded") => Ok(()),
            other => Err(ChromiumError::Script(other.unwrap_or("the model did not load").to_string())),
        }
    }

    /// Ends the WebDriver session (closing Chromium) before the driver goes.
    pub async fn close(self) -> Result<(), ChromiumError> {
        self.client.clone().close().await.map_err(|e| ChromiumError::WebDriver(e.to_string()))
    }
}
