//! The models view in headless Chromium: a GGUF file opened through the file input is copied
//! into the browser (OPFS) with a progress bar, loads and generates llama.cpp's greedy tokens,
//! is listed after a reload and runs from there, and is gone once deleted; a file that is not
//! GGUF is refused before anything is copied, one larger than the browser's storage quota runs
//! for the session only, and a truncated one fails to load with an error naming it, without
//! taking the app down. The card shows what a model needs in memory, from its header.

use std::path::Path;
use std::time::Duration;

use fantoccini::{Client, Locator};
use hearth_api::catalog::{DEFAULT_MODEL, models_dir};
use hearth_tests::{Browser, hearth_serve, open_in_chromium};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(300);

async fn run_in_page(browser: &Browser, body: &str, args: Value) -> Value {
    browser.run(body, args, WAIT).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Picks `path` in the file input and waits until adding it is done or failed; returns the
/// status text and every fraction the progress bar showed on the way.
async fn add_file(browser: &Browser, path: &Path) -> (String, String, Vec<f64>) {
    let client = &browser.client;
    // Watches the bar from before the pick, so no value is missed.
    client
        .execute(
            "window.__progress = []; \
             const bar = document.getElementById('model-add-progress'); \
             new MutationObserver(() => window.__progress.push(bar.value / bar.max)) \
               .observe(bar, { attributes: true });",
            vec![],
        )
        .await
        .unwrap();
    let input = client.find(Locator::Id("model-file")).await.unwrap();
    input.send_keys(&path.display().to_string()).await.expect("pick the file");
    let status = client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#model-add-status[data-state=done], #model-add-status[data-state=failed]"))
        .await
        .expect("adding the file ends");
    let state = status.attr("data-state").await.unwrap().unwrap_or_default();
    let text = status.text().await.unwrap();
    let progress = client.execute("return window.__progress;", vec![]).await.unwrap();
    let progress = progress.as_array().unwrap().iter().filter_map(Value::as_f64).collect();
    (state, text, progress)
}

/// The names listed as stored in this browser, once the list has been read.
async fn stored_names(client: &Client) -> Vec<String> {
    client.wait().at_most(WAIT).for_element(Locator::Css("#stored-models[data-listed=true]")).await.unwrap();
    let mut names = Vec::new();
    for li in client.find_all(Locator::Css("#stored-models li")).await.unwrap() {
        names.push(li.attr("data-name").await.unwrap().unwrap_or_default());
    }
    names
}

async fn model_status(browser: &Browser) -> String {
    let status = browser.wait_for_model(WAIT).await;
    let text = run_in_page(browser, "return document.getElementById('model-status').textContent;", Value::Null).await;
    let text = text.as_str().unwrap_or_default().to_string();
    status.map(|_| text.clone()).unwrap_or_else(|e| format!("failed: {e}"))
}

/// The first greedy golden case, run through the page's API: llama.cpp's tokens.
async fn check_greedy(browser: &Browser, what: &str) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/golden/smollm2-135m-q4_1/greedy.json");
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let case = &golden["cases"][0];
    let prompt = if case["chat"] == Value::Bool(true) {
        json!({"chat": [{"role": "user", "content": case["prompt"]}]})
    } else {
        json!({"text": case["prompt"]})
    };
    let params = json!({"max_tokens": case["ids"].as_array().unwrap().len(), "ignore_eos": true});
    let done = run_in_page(browser, "return await hearth.generate(args[0], args[1]);", json!([prompt, params])).await;
    assert_eq!(done["tokens"], case["ids"], "{what}: greedy tokens of {}", case["prompt"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gguf_opened_from_disk_is_kept_across_reloads() {
    let files = tempfile::tempdir().unwrap();
    let model = files.path().join("my-smollm.gguf");
    std::fs::copy(models_dir().join(DEFAULT_MODEL.file), &model).expect("setup fetched the default model");
    let not_gguf = files.path().join("notes.gguf");
    std::fs::write(&not_gguf, "These are notes, not a model.\n").unwrap();
    let truncated = files.path().join("truncated.gguf");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&truncated, &bytes[..1 << 20]).unwrap();

    let (_server, url) = hearth_serve();
    let browser = open_in_chromium(&format!("{url}?backend=cpu")).await;
    let client = &browser.client;
    assert!(model_status(&browser).await.starts_with(DEFAULT_MODEL.name));
    assert_eq!(stored_names(client).await, Vec::<String>::new(), "a fresh browser stores nothing");
    // The card says what the model needs, from its header.
    let plan = client.find(Locator::Id("model-plan")).await.unwrap().text().await.unwrap();
    assert!(plan.contains("on the CPU at 2048 positions of context"), "{plan}");

    // Larger than this browser lets the app store (a 405B-shaped header in a 226 GB sparse
    // file): offered for this session only, straight from the picked file, and then refused
    // from its header; nothing is stored, and the model loaded before still answers.
    let huge = files.path().join("huge-405b.gguf");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/medium-models.sh");
    let out = std::process::Command::new("bash").arg(script).arg("too-large").arg(&huge).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (state, text, _) = add_file(&browser, &huge).await;
    assert_eq!(state, "done", "{text}");
    assert!(text.contains("for this session only") && text.contains("lets this app store"), "{text}");
    let status = model_status(&browser).await;
    assert!(status.starts_with("failed") && status.contains("not even its weights fit"), "{status}");
    assert_eq!(stored_names(client).await, Vec::<String>::new());
    check_greedy(&browser, "the model loaded before the refused one").await;

    // Not GGUF: refused by name, nothing kept, the loaded model untouched.
    let (state, text, _) = add_file(&browser, &not_gguf).await;
    assert_eq!(state, "failed", "{text}");
    assert!(text.contains("notes.gguf is not a GGUF file"), "{text}");
    assert_eq!(stored_names(client).await, Vec::<String>::new());

    // A real one: copied with progress, then loaded and run.
    let (state, text, progress) = add_file(&browser, &model).await;
    assert_eq!(state, "done", "{text}");
    let partial = progress.iter().filter(|&&p| p > 0.0 && p < 1.0).count();
    assert!(partial >= 2, "the bar moves while copying: {progress:?}");
    let status = model_status(&browser).await;
    assert!(status.starts_with("my-smollm.gguf loaded"), "{status}");
    check_greedy(&browser, "the added file").await;

    // Truncated: kept (it is the user's file), but it fails to load with a reason naming it.
    let (state, text, _) = add_file(&browser, &truncated).await;
    assert_eq!(state, "done", "{text}");
    let status = model_status(&browser).await;
    assert!(status.starts_with("failed") && status.contains("truncated.gguf"), "{status}");

    // After a reload both are listed; the good one runs from this browser's storage.
    client.refresh().await.unwrap();
    assert!(model_status(&browser).await.starts_with(DEFAULT_MODEL.name));
    assert_eq!(stored_names(client).await, ["my-smollm.gguf", "truncated.gguf"]);
    let size = client.find(Locator::Css("#stored-models li[data-name='my-smollm.gguf']")).await.unwrap();
    assert!(size.text().await.unwrap().contains(&format!("{:.1} MB", DEFAULT_MODEL.size as f64 / 1e6)));
    client
        .find(Locator::Css("#stored-models li[data-name='my-smollm.gguf'] button.run"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let status = model_status(&browser).await;
    assert!(status.starts_with("my-smollm.gguf loaded"), "{status}");
    check_greedy(&browser, "the stored file after a reload").await;
    if let Ok(png) = client.screenshot().await {
        let _ = std::fs::write(concat!(env!("CARGO_TARGET_TMPDIR"), "/models-view.png"), png);
    }

    // Deleted files are gone, also after a reload.
    for name in ["truncated.gguf", "my-smollm.gguf"] {
        let button = format!("#stored-models li[data-name='{name}'] button.delete");
        client.find(Locator::Css(&button)).await.unwrap().click().await.unwrap();
        let gone = format!("//ul[@id='stored-models' and not(li[@data-name='{name}'])]");
        client.wait().at_most(WAIT).for_element(Locator::XPath(&gone)).await.expect("the file leaves the list");
    }
    client.refresh().await.unwrap();
    assert_eq!(stored_names(client).await, Vec::<String>::new());
    browser.close().await.expect("close the Chromium session");
}

/// A model too large for the page (a 405B-shaped file: 229 GB, a sparse file of which only the
/// header is real) is refused from its header with both numbers before the rest is read.
/// Served as the default model from a model cache of its own.
#[tokio::test(flavor = "multi_thread")]
async fn a_model_too_large_for_the_page_is_refused_from_its_header() {
    let home = tempfile::tempdir().unwrap();
    let models = home.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    let path = models.join(DEFAULT_MODEL.file);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/medium-models.sh");
    let out = std::process::Command::new("bash").arg(script).arg("too-large").arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > 200_000_000_000, "{size}");

    let mut child = std::process::Command::new(hearth_tests::hearth_binary())
        .args(["serve", "--port", "0"])
        .env("HEARTH_HOME", home.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _server = hearth_tests::Process(child);
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let url = lines
        .find_map(|l| l.ok()?.strip_prefix("Hearth is serving on ").map(|u| u.trim().to_string()))
        .expect("hearth serve printed its URL");
    let started = std::time::Instant::now();
    let browser = open_in_chromium(&url).await;
    let status = model_status(&browser).await;
    let elapsed = started.elapsed();
    println!("{status} ({elapsed:?})");
    assert!(status.starts_with("failed"), "{status}");
    assert!(status.contains("the model needs") && status.contains("GB on the CPU"), "{status}");
    assert!(status.contains("this page's free wasm32 memory"), "{status}");
    assert!(status.contains("not even its weights fit"), "{status}");
    // What was fetched: the header, not 229 GB.
    assert!(elapsed < Duration::from_secs(120), "took {elapsed:?}");
    browser.close().await.unwrap();
}
