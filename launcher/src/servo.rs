//! Servo, embedded (cargo feature `servo`): the app in a headless web view with a software
//! rendering context and WebGPU on, driven by scripts like any [`Page`].
//!
//! Servo's objects are not `Send` and its event loop must be spun by the thread that made
//! them, so a `ServoPage` is a thread that owns Servo and runs the scripts it is sent between
//! spins of the loop.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use serde_json::Value;
use servo::{
    ConsoleLogLevel, EventLoopWaker, JSValue, LoadStatus, Preferences, RenderingContext, ServoBuilder,
    SoftwareRenderingContext, WebView, WebViewBuilder, WebViewDelegate,
};
use thiserror::Error;

use crate::page::{BoxFuture, Page, PageError};

#[derive(Debug, Error)]
pub enum ServoError {
    #[error("cannot make a software rendering context: {0}")]
    Rendering(String),
    #[error("{url:?} is not a URL: {message}")]
    Url { url: String, message: String },
    #[error("Servo's thread stopped")]
    Stopped,
    #[error("the page did not load within {0:?}")]
    LoadTimeout(Duration),
}

struct Job {
    script: String,
    reply: tokio::sync::oneshot::Sender<Result<Value, PageError>>,
}

/// The app in headless Servo. Dropping it stops Servo.
pub struct ServoPage {
    jobs: Option<Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ServoPage {
    /// Closes the page and waits for Servo to shut down: the process must not exit (and run
    /// SpiderMonkey's static destructors) while Servo's threads still hold its locks.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Servo wakes the loop through this; the loop also spins on a short timer, so there is
/// nothing to do.
#[derive(Clone)]
struct Waker;

impl EventLoopWaker for Waker {
    fn clone_box(&self) -> Box<dyn EventLoopWaker> {
        Box::new(self.clone())
    }
    fn wake(&self) {}
}

/// Passes the page's warnings and errors (all its console with `HEARTH_SERVO_CONSOLE=1`) and
/// crashes to stderr, and paints each frame so rendering never waits on us.
struct PageLog {
    everything: bool,
}

impl WebViewDelegate for PageLog {
    fn notify_new_frame_ready(&self, webview: WebView) {
        webview.paint();
    }

    fn show_console_message(&self, _webview: WebView, level: ConsoleLogLevel, message: String) {
        if self.everything || matches!(level, ConsoleLogLevel::Warn | ConsoleLogLevel::Error) {
            eprintln!("servo page ({level:?}): {message}");
        }
    }

    fn notify_crashed(&self, _webview: WebView, reason: String, _backtrace: Option<String>) {
        eprintln!("servo: the page crashed: {reason}");
    }
}

/// Whether this Servo carries Hearth's shared-memory patches (launcher/servo-patches), as
/// scripts/build-servo.sh found when it built it: `patched`, or `unpatched: why`.
pub const SHARED_MEMORY: &str = match option_env!("HEARTH_SERVO_SHARED_MEMORY") {
    Some(status) => status,
    None => "unpatched: built without scripts/build-servo.sh",
};

/// Longest the page may take to load.
const LOAD_LIMIT: Duration = Duration::from_secs(120);

impl ServoPage {
    /// Starts Servo on its own thread and loads `url`; returns once the page has loaded.
    pub fn open(url: &str) -> Result<Self, ServoError> {
        if SHARED_MEMORY != "patched" {
            eprintln!(
                "servo: no shared memory in this build ({SHARED_MEMORY}); the page runs the single-threaded \
                 build and the message-passing bus"
            );
        }
        let url = url::Url::parse(url).map_err(|e| ServoError::Url { url: url.into(), message: e.to_string() })?;
        let (jobs, inbox) = mpsc::channel();
        let (ready, on_ready) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("hearth-servo".into())
            .spawn(move || run(url, inbox, ready))
            .map_err(|e| ServoError::Rendering(e.to_string()))?;
        let page = Self { jobs: Some(jobs), thread: Some(thread) };
        on_ready.recv().map_err(|_| ServoError::Stopped)??;
        Ok(page)
    }
}

/// The Servo thread: builds Servo and the web view, waits for the load, then runs jobs until
/// the page is dropped.
fn run(url: url::Url, inbox: Receiver<Job>, ready: Sender<Result<(), ServoError>>) {
    let size = dpi::PhysicalSize { width: 1280, height: 900 };
    let rendering_context: Rc<dyn RenderingContext> = match SoftwareRenderingContext::new(size) {
        Ok(context) => Rc::new(context),
        Err(e) => {
            let _ = ready.send(Err(ServoError::Rendering(format!("{e:?}"))));
            return;
        }
    };
    if let Err(e) = rendering_context.make_current() {
        let _ = ready.send(Err(ServoError::Rendering(format!("{e:?}"))));
        return;
    }
    let mut preferences = Preferences::default();
    preferences.dom_webgpu_enabled = true;
    // The loopback server is reached directly, never through a proxy.
    preferences.network_http_proxy_uri = String::new();
    preferences.network_https_proxy_uri = String::new();
    let servo = ServoBuilder::default().preferences(preferences).event_loop_waker(Box::new(Waker)).build();
    let everything = std::env::var_os("HEARTH_SERVO_CONSOLE").is_some();
    if everything {
        // The web view has no URL until it starts loading, so name the one it was given.
        eprintln!("servo: loading {url}");
    }
    let log = Rc::new(PageLog { everything });
    let webview: WebView = WebViewBuilder::new(&servo, rendering_context).url(url).delegate(log).build();

    let start = std::time::Instant::now();
    while webview.load_status() != LoadStatus::Complete {
        servo.spin_event_loop();
        std::thread::sleep(Duration::from_millis(2));
        if start.elapsed() > LOAD_LIMIT {
            let _ = ready.send(Err(ServoError::LoadTimeout(LOAD_LIMIT)));
            return;
        }
    }
    if everything {
        eprintln!("servo: loaded in {:.1} s", start.elapsed().as_secs_f64());
    }
    if ready.send(Ok(())).is_err() {
        return;
    }
    loop {
        servo.spin_event_loop();
        match inbox.try_recv() {
            Ok(job) => {
                let reply = RefCell::new(Some(job.reply));
                webview.evaluate_javascript(job.script, move |result| {
                    let answer = match result {
                        Ok(JSValue::String(json)) => serde_json::from_str(&json)
                            .map_err(|e| PageError::Script(format!("the script's result is not JSON: {e}"))),
                        Ok(JSValue::Undefined) => Ok(Value::Null),
                        Ok(other) => Err(PageError::Script(format!("the script returned {other:?}"))),
                        Err(e) => Err(PageError::Script(format!("{e:?}"))),
                    };
                    if let Some(reply) = reply.borrow_mut().take() {
                        let _ = reply.send(answer);
                    }
                });
            }
            Err(mpsc::TryRecvError::Empty) => std::thread::sleep(Duration::from_millis(1)),
            Err(mpsc::TryRecvError::Disconnected) => break,
        }
    }
}

impl Page for ServoPage {
    fn engine(&self) -> &'static str {
        "servo"
    }

    fn eval<'a>(&'a self, script: &'a str, args: Value) -> BoxFuture<'a, Result<Value, PageError>> {
        // The script's value comes back as JSON text, so any value crosses intact.
        let script = format!("JSON.stringify((function (args) {{ {script} }})({args}))");
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sent = self.jobs.as_ref().map(|jobs| jobs.send(Job { script, reply }));
        Box::pin(async move {
            let stopped = || PageError::Engine { engine: "servo", message: ServoError::Stopped.to_string() };
            sent.and_then(Result::ok).ok_or_else(stopped)?;
            answer.await.map_err(|_| stopped())?
        })
    }
}
