//! The chat screen in headless Chromium, on the CPU engine in both runtime builds: the default
//! model loads in the engine worker, a greedy reply streams in and is word for word what
//! llama.cpp generates (tests/golden/), the stop button ends a reply, a second turn reuses
//! the first turn's KV cache, and the installed app (service worker and model cache) answers
//! the same with its server stopped.

use std::time::Duration;

use fantoccini::{Client, Locator};
use hearth_tests::{hearth_serve, open_in_chromium};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(300);

fn golden_chat_case() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/golden/smollm2-135m-q4_1/greedy.json");
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("golden file")).unwrap();
    golden["cases"].as_array().unwrap().iter().find(|c| c["chat"] == Value::Bool(true)).expect("a chat case").clone()
}

async fn set_setting(client: &Client, id: &str, value: &str) {
    let script = "const el = document.getElementById(arguments[0]); el.value = arguments[1]; \
                  el.dispatchEvent(new Event('change'));";
    client.execute(script, vec![id.into(), value.into()]).await.unwrap_or_else(|e| panic!("set #{id}: {e}"));
}

async fn wait_for_model(client: &Client) {
    let status = client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#model-status[data-state=loaded], #model-status[data-state=failed]"))
        .await
        .expect("the model loads or fails");
    let text = status.text().await.unwrap();
    assert_eq!(status.attr("data-state").await.unwrap().as_deref(), Some("loaded"), "{text}");
}

async fn send(client: &Client, message: &str) {
    let input = client.find(Locator::Id("chat-input")).await.unwrap();
    input.send_keys(message).await.unwrap();
    client.find(Locator::Id("chat-send")).await.unwrap().click().await.unwrap();
}

/// Waits for the reply to finish; returns (assistant messages, finish reason, stats line).
async fn finished_reply(client: &Client, turns: usize) -> (Vec<String>, String, String) {
    let selector = format!("#chat-log .msg.assistant:not(.streaming):nth-of-type({})", turns * 2);
    client.wait().at_most(WAIT).for_element(Locator::Css(&selector)).await.expect("the reply finishes");
    let stats = client.find(Locator::Id("chat-stats")).await.unwrap();
    let finish = stats.attr("data-finish").await.unwrap().unwrap();
    let mut replies = Vec::new();
    for el in client.find_all(Locator::Css("#chat-log .msg.assistant p")).await.unwrap() {
        replies.push(el.prop("textContent").await.unwrap().unwrap_or_default());
    }
    (replies, finish, stats.text().await.unwrap())
}

/// Sends the golden chat case's prompt for as many tokens as llama.cpp made and checks the
/// reply is word for word llama.cpp's (`what` names the run in failures); returns the stats line.
async fn golden_reply(client: &Client, what: &str) -> String {
    let case = golden_chat_case();
    let steps = case["ids"].as_array().unwrap().len();
    set_setting(client, "chat-max-tokens", &steps.to_string()).await;
    send(client, case["prompt"].as_str().unwrap()).await;
    let (replies, finish, stats) = finished_reply(client, 1).await;
    assert_eq!(replies, [case["text"].as_str().unwrap()], "{what}: {stats}");
    assert_eq!(finish, "length", "{stats}");
    assert!(stats.contains("tok/s"), "the speed is shown: {stats}");
    println!("{what}, {steps} tokens: {stats}");
    stats
}

async fn greedy_reply_matches_llama_cpp(url: &str, build: &str) {
    let browser = open_in_chromium(url).await;
    let client = &browser.client;
    wait_for_model(client).await;
    assert_eq!(client.find(Locator::Id("loaded-build")).await.unwrap().text().await.unwrap(), build);
    golden_reply(client, &format!("{build} build")).await;

    // A second turn only prefills its own tokens.
    set_setting(client, "chat-max-tokens", "8").await;
    send(client, "And of Italy?").await;
    let (replies, _, stats) = finished_reply(client, 2).await;
    assert_eq!(replies.len(), 2, "{stats}");
    let prompt: usize = stats.split(' ').next().unwrap().parse().unwrap();
    let new: usize = stats.split('(').nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(new < prompt / 2, "the first turn's KV cache is reused: {stats}");

    if let Ok(png) = client.screenshot().await {
        let _ = std::fs::write(format!("{}/chat-{build}.png", env!("CARGO_TARGET_TMPDIR")), png);
    }
    browser.close().await.expect("close the Chromium session");
}

#[tokio::test(flavor = "multi_thread")]
async fn threaded_build_chats_like_llama_cpp() {
    let (_server, url) = hearth_serve();
    greedy_reply_matches_llama_cpp(&url, "threaded").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn single_threaded_build_chats_like_llama_cpp() {
    let (_server, url) = hearth_serve();
    greedy_reply_matches_llama_cpp(&format!("{url}?build=single"), "single-threaded").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stop_button_ends_a_reply_and_the_context_is_a_setting() {
    let (_server, url) = hearth_serve();
    let browser = open_in_chromium(&url).await;
    let client = &browser.client;
    wait_for_model(client).await;
    set_setting(client, "chat-max-tokens", "1000").await;
    send(client, "Write a long story about a dragon.").await;
    // Stop once some text has streamed in.
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::XPath("//div[contains(@class,'streaming')]/p[string-length(text()) > 10]"))
        .await
        .expect("the reply streams in");
    client.find(Locator::Id("chat-stop")).await.unwrap().click().await.unwrap();
    let (replies, finish, stats) = finished_reply(client, 1).await;
    assert_eq!(finish, "cancelled", "{stats}");
    assert!(replies[0].len() > 10, "the text so far is kept: {replies:?}");
    let tokens: usize = client
        .find(Locator::Id("chat-stats"))
        .await
        .unwrap()
        .attr("data-completion-tokens")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    assert!(tokens < 1000, "stopped early: {stats}");

    // The context is a setting too: the model loads again with a KV cache of that size.
    set_setting(client, "chat-context", "512").await;
    wait_for_model(client).await;
    let context = client.execute("return hearth.context();", vec![]).await.unwrap();
    assert_eq!(context, 512, "the model's context after the setting changed");
    let plan = client.find(Locator::Id("model-plan")).await.unwrap().text().await.unwrap();
    assert!(plan.contains("at 512 positions of context"), "{plan}");
    browser.close().await.expect("close the Chromium session");
}

/// The installed app with no server: load the app once (its service worker keeps the app
/// shell, its engine keeps the model), stop the server, reload: the app starts from its caches
/// and the chat answers word for word as llama.cpp does.
#[tokio::test(flavor = "multi_thread")]
async fn the_installed_app_chats_with_the_server_stopped() {
    let (server, url) = hearth_serve();
    let browser = open_in_chromium(&url).await;
    let client = &browser.client;
    wait_for_model(client).await;

    // Installable: a manifest that names the app and opens it standalone, with icons that load.
    let manifest = browser
        .run(
            "const link = document.querySelector('link[rel=manifest]'); \
             const manifest = await (await fetch(link.href)).json(); \
             const icons = []; \
             for (const icon of manifest.icons) { \
               const r = await fetch(new URL(icon.src, link.href)); \
               icons.push({ sizes: icon.sizes, ok: r.ok, type: r.headers.get('content-type'), \
                            bytes: (await r.arrayBuffer()).byteLength }); \
             } \
             return { name: manifest.name, display: manifest.display, start_url: manifest.start_url, icons };",
            Value::Null,
            WAIT,
        )
        .await
        .expect("the manifest and its icons load");
    assert_eq!(manifest["name"], "Hearth", "{manifest}");
    assert_eq!(manifest["display"], "standalone", "{manifest}");
    for size in ["192x192", "512x512"] {
        let icon = manifest["icons"].as_array().unwrap().iter().find(|i| i["sizes"] == size);
        let icon = icon.unwrap_or_else(|| panic!("a {size} icon: {manifest}"));
        assert!(icon["ok"] == true && icon["type"] == "image/png" && icon["bytes"].as_u64() > Some(1000), "{icon}");
    }

    // The shell is cached once the service worker is active; the model once it has loaded.
    let offline = client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#offline-status[data-state=ready], #offline-status[data-state=failed]"))
        .await
        .expect("the service worker installs or fails");
    let offline_text = offline.text().await.unwrap();
    assert_eq!(offline.attr("data-state").await.unwrap().as_deref(), Some("ready"), "{offline_text}");
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::XPath("//td[@id='model-cached' and text()='cached']"))
        .await
        .expect("the model is in the browser's model cache");

    drop(server);
    let reachable = browser
        .run(
            "try { await fetch('/v1/models', { cache: 'no-store' }); return true; } catch { return false; }",
            Value::Null,
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(reachable, false, "the server is stopped");

    client.refresh().await.expect("reload the page");
    wait_for_model(client).await;
    let status = client.find(Locator::Id("model-status")).await.unwrap().text().await.unwrap();
    assert!(status.contains("from this browser's cache"), "{status}");
    // Still isolated, so still the threaded build: the cached page keeps its headers, and the
    // engine worker its URL's query (?build=threaded).
    assert_eq!(client.find(Locator::Id("loaded-build")).await.unwrap().text().await.unwrap(), "threaded");
    golden_reply(client, "offline").await;
    // For a person to look at: target/tmp/chat-offline.png.
    if let Ok(png) = client.screenshot().await {
        let _ = std::fs::write(concat!(env!("CARGO_TARGET_TMPDIR"), "/chat-offline.png"), png);
    }
    browser.close().await.expect("close the Chromium session");
}
