//! The whole chain in a real browser: `hearth serve` → headless Chromium (WebGPU on
//! SwiftShader) → Leptos page → engine Web Worker (threaded or single-threaded wasm) → WebGPU
//! and rayon kernels, checked in the DOM.

use std::time::Duration;

use fantoccini::{Client, Locator};
use hearth_api::probe::{PROBE_COLS, PROBE_ROWS, probe_expected};
use hearth_tests::{hearth_serve, open_in_chromium};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(120);

async fn text(client: &Client, id: &str) -> String {
    client.wait().at_most(WAIT).for_element(Locator::Id(id)).await.unwrap_or_else(|e| panic!("#{id}: {e}"));
    client.find(Locator::Id(id)).await.unwrap().text().await.unwrap()
}

/// Waits for the engine, runs the kernel probe, checks both results against the exact product,
/// and returns (loaded build, threads).
async fn run_probe(client: &Client) -> (String, usize) {
    let status = client.wait().at_most(WAIT).for_element(Locator::Css("#engine-status.ok, #engine-status.err")).await;
    let status = status.expect("the engine reports ready or failed");
    assert_eq!(status.text().await.unwrap(), "ready");

    let adapter = text(client, "gpu-adapter").await;
    assert!(!adapter.is_empty() && !adapter.contains("hidden"), "a named WebGPU adapter: {adapter:?}");
    assert!(text(client, "gpu-limits").await.contains("storage binding"));
    // Whether the kernels use shader-f16 (SwiftShader has it not, a hardware adapter may).
    let f16 = text(client, "gpu-f16").await;
    assert!(f16.starts_with("yes: ") || f16.starts_with("no: "), "{f16:?}");
    assert_eq!(text(client, "model-name").await, "SmolLM2-135M-Instruct Q4_1");

    client.find(Locator::Id("run-kernels")).await.unwrap().click().await.unwrap();
    let expected_sum: f64 = probe_expected(PROBE_ROWS, PROBE_COLS).iter().map(|&v| f64::from(v)).sum();
    for id in ["kernel-gpu", "kernel-cpu"] {
        let el = client.wait().at_most(WAIT).for_element(Locator::Id(id)).await.unwrap();
        let shown = el.text().await.unwrap();
        assert_eq!(el.attr("data-correct").await.unwrap().as_deref(), Some("true"), "{id}: {shown}");
        let checksum: f64 = el.attr("data-checksum").await.unwrap().unwrap().parse().unwrap();
        assert_eq!(checksum, expected_sum, "{id}: {shown}");
        assert!(shown.contains(" ms"), "{id} shows its time: {shown}");
    }
    let build = text(client, "loaded-build").await;
    let threads = text(client, "threads").await.parse().unwrap();
    (build, threads)
}

#[tokio::test(flavor = "multi_thread")]
async fn threaded_build_runs_webgpu_and_rayon_kernels() {
    let (_server, url) = hearth_serve();
    let browser = open_in_chromium(&url).await;
    let client = &browser.client;

    assert_eq!(text(client, "cross-origin-isolated").await, "true");
    assert_eq!(text(client, "runtime-build").await, "threaded");
    let (build, threads) = run_probe(client).await;
    assert_eq!(build, "threaded");
    assert!(threads >= 2, "rayon pool has {threads} threads");
    assert!(text(client, "model-server").await.contains("available"), "setup fetched the default model");
    // For a person to look at: target/tmp/first-screen-threaded.png.
    if let Ok(png) = client.screenshot().await {
        let _ = std::fs::write(concat!(env!("CARGO_TARGET_TMPDIR"), "/first-screen-threaded.png"), png);
    }
    browser.close().await.expect("close the Chromium session");
}

#[tokio::test(flavor = "multi_thread")]
async fn single_threaded_build_runs_the_same_kernels() {
    let (_server, url) = hearth_serve();
    let browser = open_in_chromium(&format!("{url}?build=single")).await;
    let client = &browser.client;

    assert_eq!(text(client, "cross-origin-isolated").await, "true");
    assert!(text(client, "runtime-build-reason").await.contains("?build=single"));
    let (build, threads) = run_probe(client).await;
    assert_eq!((build.as_str(), threads), ("single-threaded", 1));
    browser.close().await.expect("close the Chromium session");
}

#[tokio::test(flavor = "multi_thread")]
async fn page_without_isolation_falls_back_to_single_threaded() {
    // The same server code without COOP/COEP, as a page is where shared memory is off.
    let listener = hearth::server::bind(0).await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let models = tempfile::tempdir().unwrap();
    let options = hearth::server::ServeOptions {
        models_dir: models.path().to_path_buf(),
        cross_origin_isolation: false,
        app_dir: None,
        session_model: None,
    };
    let server = tokio::spawn(hearth::server::serve(listener, options, None, std::future::pending()));
    let browser = open_in_chromium(&url).await;
    let client = &browser.client;

    assert_eq!(text(client, "cross-origin-isolated").await, "false");
    assert_eq!(text(client, "runtime-build").await, "single-threaded");
    assert!(text(client, "runtime-build-reason").await.contains("not cross-origin isolated"));
    let (build, threads) = run_probe(client).await;
    assert_eq!((build.as_str(), threads), ("single-threaded", 1));
    assert!(text(client, "model-server").await.contains("not on this server"), "empty model cache");
    browser.close().await.expect("close the Chromium session");
    server.abort();
}

/// Copies the folder `from` into `to`, recursively.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The app shell caches in this browser, by name.
async fn shell_caches(browser: &hearth_tests::Browser) -> Vec<String> {
    let keys = browser
        .run("return (await caches.keys()).filter(k => k.startsWith('hearth-shell-'));", Value::Null, WAIT)
        .await
        .unwrap();
    serde_json::from_value(keys).unwrap()
}

/// A new build on the server is fetched and cached while the app runs, but the running app
/// keeps its own until the next start: then the new one takes over and the old cache goes.
#[tokio::test(flavor = "multi_thread")]
async fn an_update_waits_for_the_next_start() {
    let app = tempfile::tempdir().unwrap();
    copy_dir(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../dist")), app.path());
    let listener = hearth::server::bind(0).await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let models = tempfile::tempdir().unwrap();
    let options = hearth::server::ServeOptions {
        models_dir: models.path().to_path_buf(),
        cross_origin_isolation: true,
        app_dir: Some(app.path().to_path_buf()),
        session_model: None,
    };
    let server = tokio::spawn(hearth::server::serve(listener, options, None, std::future::pending()));
    let browser = open_in_chromium(&url).await;
    let client = &browser.client;
    let offline = |state: &'static str| async move {
        client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(&format!("#offline-status[data-state={state}]")))
            .await
            .unwrap_or_else(|e| panic!("the offline status never read {state}: {e}"));
    };
    offline("ready").await;
    let first = shell_caches(&browser).await;
    assert_eq!(first.len(), 1, "{first:?}");
    // The installed app's next start: now its service worker serves the page.
    client.refresh().await.unwrap();
    offline("ready").await;
    let controlled = browser.run("return navigator.serviceWorker.controller !== null;", Value::Null, WAIT).await;
    assert_eq!(controlled.unwrap(), Value::Bool(true));

    // A new build: sw.js names another version (scripts/pwa-shell.sh writes it per build).
    let sw = app.path().join("sw.js");
    let script = std::fs::read_to_string(&sw).unwrap();
    let version = script.lines().find(|l| l.starts_with("const VERSION = ")).expect("sw.js names its version");
    std::fs::write(&sw, script.replace(version, "const VERSION = 'next-build';")).unwrap();
    browser
        .run("await (await navigator.serviceWorker.getRegistration()).update();", Value::Null, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    offline("update-waiting").await;
    let status = text(client, "offline-status").await;
    assert!(status.contains("starts next time"), "{status}");
    // Mid-session: the new shell is cached beside the old one, and the old worker still
    // serves this page.
    let mut both = shell_caches(&browser).await;
    both.sort();
    let mut expected = vec![first[0].clone(), "hearth-shell-next-build".to_string()];
    expected.sort();
    assert_eq!(both, expected);
    let workers = browser
        .run(
            "const r = await navigator.serviceWorker.getRegistration(); \
             return { active: r.active?.state, waiting: r.waiting?.state, \
                      controlled: navigator.serviceWorker.controller === r.active };",
            Value::Null,
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(workers, serde_json::json!({"active": "activated", "waiting": "installed", "controlled": true}));

    // The next start: every page of the app closed, then opened again.
    client.goto("about:blank").await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    client.goto(&url).await.unwrap();
    offline("ready").await;
    assert_eq!(shell_caches(&browser).await, ["hearth-shell-next-build"], "the new build took over");
    browser.close().await.expect("close the Chromium session");
    server.abort();
}
