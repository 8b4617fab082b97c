//! The chat screen in headless Chromium, on the CPU engine in both runtime builds: the default
//! model loads in the engine worker, a greedy reply streams in and is word for word what
//! llama.cpp generates (tests/golden/), the stop button ends a reply, and a second turn reuses
//! the first turn's KV cache.

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

async fn greedy_reply_matches_llama_cpp(url: &str, build: &str) {
    let browser = open_in_chromium(url).await;
    let client = &browser.client;
    wait_for_model(client).await;
    assert_eq!(client.find(Locator::Id("loaded-build")).await.unwrap().text().await.unwrap(), build);

    let case = golden_chat_case();
    let steps = case["ids"].as_array().unwrap().len();
    set_setting(client, "chat-max-tokens", &steps.to_string()).await;
    send(client, case["prompt"].as_str().unwrap()).await;
    let (replies, finish, stats) = finished_reply(client, 1).await;
    assert_eq!(replies, [case["text"].as_str().unwrap()], "{build} build: {stats}");
    assert_eq!(finish, "length", "{stats}");
    assert!(stats.contains("tok/s"), "the speed is shown: {stats}");
    println!("{build} build, {steps} tokens: {stats}");

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
async fn the_stop_button_ends_a_reply() {
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
    browser.close().await.expect("close the Chromium session");
}
