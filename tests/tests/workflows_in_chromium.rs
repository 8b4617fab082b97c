//! Workflows in headless Chromium: the app's workflow runner runs an example (the hub in the
//! engine worker, each agent in a Web Worker of its own over the shared-memory bus), pauses
//! before a step, runs one step, resumes; its timeline and agent table fill, the monitor counts
//! its tokens and bus messages; and the transcript
//! is the same as a second run's without pauses; a reload keeps the transcript, also of a run
//! the reload cut off; Stop ends a run before its next step. `hearth run --engine chromium` prints that transcript, the same twice.

use std::time::Duration;

use fantoccini::{Client, Locator};
use hearth_tests::{hearth_binary, hearth_serve, open_in_chromium};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(600);
const DEBATE: &str = include_str!("../../examples/debate.toml");

/// Waits until the status text is `text` (or the run failed, which fails the test).
async fn wait_for_status(client: &Client, text: &str) {
    let found = client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(&format!(
            "//span[@id='workflow-status' and (normalize-space()='{text}' or @data-state='failed')]"
        )))
        .await
        .unwrap_or_else(|e| panic!("waiting for {text:?}: {e}"));
    assert_eq!(found.text().await.unwrap(), text);
}

/// The timeline's entries: (event kind, text).
async fn timeline(client: &Client) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for li in client.find_all(Locator::Css("#workflow-timeline li")).await.unwrap() {
        let kind = li.attr("data-event").await.unwrap().unwrap_or_default();
        let text = li.find(Locator::Css(".what")).await.unwrap().text().await.unwrap();
        out.push((kind, text));
    }
    out
}

async fn click(client: &Client, id: &str) {
    client.find(Locator::Id(id)).await.unwrap().click().await.unwrap_or_else(|e| panic!("click #{id}: {e}"));
}

fn messages(events: &[(String, String)]) -> Vec<String> {
    events.iter().filter(|(kind, _)| kind == "message").map(|(_, text)| text.clone()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workflow_runs_in_the_page_pauses_steps_and_fills_its_timeline() {
    let (_server, url) = hearth_serve();
    let browser = open_in_chromium(&format!("{url}?backend=cpu")).await;
    let client = &browser.client;
    browser.wait_for_model(WAIT).await.unwrap_or_else(|e| panic!("{e}"));
    wait_for_status(client, "ready to run debate").await;

    // Paused straight after the start: it holds before the next step, with each step done so
    // far (one debater's message each) on the timeline.
    // Long tasks on the main thread while the workflow runs are counted, and printed (a
    // figure, not a test: all the work is meant to be in workers).
    client
        .execute(
            "window.__longTasks = []; \
             new PerformanceObserver(l => window.__longTasks.push(...l.getEntries().map(e => e.duration))) \
               .observe({ type: 'longtask', buffered: false });",
            vec![],
        )
        .await
        .unwrap();
    click(client, "workflow-run").await;
    click(client, "workflow-pause").await;
    let held = client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#workflow-status[data-state=paused], #workflow-status[data-state=failed]"))
        .await
        .unwrap();
    let text = held.text().await.unwrap();
    let step: usize =
        text.strip_prefix("paused before step ").and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{text}"));
    assert!(step < 5, "the debate has five steps: {text}");
    assert_eq!(client.find(Locator::Id("workflow-pause")).await.unwrap().text().await.unwrap(), "Resume");
    assert_eq!(messages(&timeline(client).await).len(), step, "one message per step before the pause");

    // One step, then held again.
    click(client, "workflow-step").await;
    wait_for_status(client, &format!("paused before step {}", step + 1)).await;
    assert_eq!(messages(&timeline(client).await).len(), step + 1);

    click(client, "workflow-pause").await; // Resume
    wait_for_status(client, "finished").await;
    let long = client
        .execute(
            "return { tasks: window.__longTasks, \
                      observed: PerformanceObserver.supportedEntryTypes.includes('longtask') };",
            vec![],
        )
        .await
        .unwrap();
    let tasks: Vec<f64> = long["tasks"].as_array().unwrap().iter().filter_map(Value::as_f64).collect();
    println!(
        "main-thread long tasks during the run: {} (longest {:.0} ms; observed: {})",
        tasks.len(),
        tasks.iter().copied().fold(0.0, f64::max),
        long["observed"]
    );
    let events = timeline(client).await;
    assert_eq!(events.first().map(|e| e.0.as_str()), Some("started"), "{events:?}");
    assert_eq!(events.last().map(|e| e.0.as_str()), Some("finished"), "{events:?}");
    let said = messages(&events);
    let speakers: Vec<&str> = said.iter().map(|m| m.split(':').next().unwrap_or_default()).collect();
    assert_eq!(speakers, ["pro", "con", "pro", "con", "judge"], "{said:?}");
    assert!(said.iter().all(|m| m.len() > "judge: ".len() + 10), "each agent says something: {said:?}");
    assert!(
        events.iter().any(|(kind, text)| kind == "tool_call" && text.starts_with("judge called scratchpad(")),
        "the judge records the winner on the scratchpad: {events:?}"
    );

    // The agent table: counts from the transcript, everyone idle at the end.
    let mut rows = Vec::new();
    for row in client.find_all(Locator::Css("#workflow-agents tbody tr")).await.unwrap() {
        let cells: Vec<String> = {
            let mut cells = Vec::new();
            for td in row.find_all(Locator::Css("td")).await.unwrap() {
                cells.push(td.text().await.unwrap());
            }
            cells
        };
        rows.push(cells);
    }
    let summary: Vec<(&str, &str, &str)> = rows.iter().map(|r| (r[0].as_str(), r[1].as_str(), r[2].as_str())).collect();
    assert_eq!(summary, [("pro", "idle", "2"), ("con", "idle", "2"), ("judge", "idle", "1")], "{rows:?}");
    let tokens: usize = rows.iter().map(|r| r[4].parse::<usize>().unwrap()).sum();
    assert!(tokens > 20, "{rows:?}");

    // For a person to look at: target/tmp/workflows-view.png.
    if let Ok(card) = client.find(Locator::Id("workflows")).await
        && let Ok(png) = card.screenshot().await
    {
        let _ = std::fs::write(concat!(env!("CARGO_TARGET_TMPDIR"), "/workflows-view.png"), png);
    }

    // The monitor saw the run: tokens, bus traffic, a heap holding the model, a chart.
    let monitor = browser
        .run(
            "await new Promise(r => setTimeout(r, 1200)); \
             const n = id => Number(document.getElementById(id).dataset.bytes); \
             return { tokens: Number(document.getElementById('monitor-tokens').textContent), \
                      bus: Number(document.getElementById('monitor-bus').dataset.messages), \
                      wasm: n('monitor-wasm'), model: n('monitor-model'), \
                      threads: Number(document.getElementById('monitor-cpu').dataset.threads), \
                      clock: Number(document.getElementById('monitor-cpu').dataset.clockMs), \
                      busy: [...document.querySelectorAll('#monitor-cpu .thread')] \
                        .map(t => [t.dataset.thread, Number(t.dataset.busyMs)]), \
                      points: document.querySelector('#tokens-chart polyline').getAttribute('points').split(' ').length };",
            Value::Null,
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(monitor["tokens"].as_u64(), Some(tokens as u64), "the monitor counts the agents' tokens: {monitor}");
    assert!(monitor["bus"].as_u64().unwrap() >= 15, "each turn is at least three bus messages: {monitor}");
    let (wasm, model) = (monitor["wasm"].as_u64().unwrap(), monitor["model"].as_u64().unwrap());
    assert!(model > 50_000_000 && wasm > model, "the heap holds the model: {monitor}");
    assert!(monitor["points"].as_u64().unwrap() >= 2, "{monitor}");
    // Every thread of the CPU pool worked on the agents' forward passes, none for longer than
    // the engine worker has existed (each counts its own time once).
    let busy: Vec<(String, f64)> = serde_json::from_value(monitor["busy"].clone()).unwrap();
    let threads = monitor["threads"].as_u64().unwrap() as usize;
    assert!(threads >= 1 && busy.len() >= threads, "{monitor}");
    let clock = monitor["clock"].as_f64().unwrap();
    for (i, (name, ms)) in busy.iter().take(threads).enumerate() {
        assert_eq!(name, &format!("pool thread {i}"), "{monitor}");
        assert!(*ms > 0.0 && *ms <= clock, "{name} busy {ms} ms of {clock} ms: {monitor}");
    }
    println!("CPU pool threads busy during the workflows: {busy:?} ms of {clock:.0} ms");
    if let Ok(card) = client.find(Locator::Id("monitor")).await
        && let Ok(png) = card.screenshot().await
    {
        let _ = std::fs::write(concat!(env!("CARGO_TARGET_TMPDIR"), "/monitor-view.png"), png);
    }

    // The same workflow and seed without pauses, through `window.hearth`: the same transcript,
    // so pausing and stepping changed nothing but the timing.
    let lines = browser
        .run(
            "const lines = []; await hearth.runWorkflow(args[0], null, l => lines.push(l)); return lines;",
            json!([DEBATE]),
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let lines: Vec<Value> =
        lines.as_array().unwrap().iter().map(|l| serde_json::from_str(l.as_str().unwrap()).unwrap()).collect();
    let again: Vec<String> = lines
        .iter()
        .filter(|l| l["event"] == "message")
        .map(|l| format!("{}: {}", l["from"].as_str().unwrap(), l["content"].as_str().unwrap()))
        .collect();
    assert_eq!(again, said, "the same messages in a second run");
    assert_eq!(lines[0]["transport"], "shared_memory");
    assert_eq!(lines[0]["backend"], "cpu");

    // The bus benchmark's page side measures both transports (figures, not asserted).
    let figures =
        browser.run("return await hearth.benchBus();", Value::Null, WAIT).await.unwrap_or_else(|e| panic!("{e}"));
    let figures = figures.as_array().unwrap();
    assert_eq!(figures.len(), 2, "{figures:?}");
    for f in figures {
        for key in ["p50_us", "p99_us", "messages_per_s"] {
            assert!(f[key].as_f64().is_some_and(|v| v.is_finite() && v > 0.0), "{f}");
        }
    }
    println!("bus in the page: {figures:?}");

    // A reload keeps the last run's transcript; one cut off by the reload says so, and keeps
    // every message that had arrived.
    client.refresh().await.unwrap();
    wait_for_status(client, "finished").await;
    assert_eq!(messages(&timeline(client).await), said, "the finished run, after a reload");
    browser.wait_for_model(WAIT).await.unwrap_or_else(|e| panic!("{e}"));
    click(client, "workflow-run").await;
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#workflow-timeline li[data-event=message]"))
        .await
        .expect("a first message");
    client.refresh().await.unwrap();
    let interrupted = "interrupted: the page was reloaded while it ran (the transcript so far is kept)";
    wait_for_status(client, interrupted).await;
    let kept = messages(&timeline(client).await);
    assert!(!kept.is_empty() && kept.len() < said.len(), "{kept:?}");
    assert_eq!(kept[..], said[..kept.len()], "the messages that arrived before the reload");

    // Stop ends a run before its next step, and says so (also after a reload).
    browser.wait_for_model(WAIT).await.unwrap_or_else(|e| panic!("{e}"));
    click(client, "workflow-run").await;
    click(client, "workflow-stop").await;
    let stopped = client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#workflow-status[data-state=stopped], #workflow-status[data-state=failed]"))
        .await
        .unwrap();
    let text = stopped.text().await.unwrap();
    assert_eq!(stopped.attr("data-state").await.unwrap().as_deref(), Some("stopped"), "{text}");
    let step: usize =
        text.strip_prefix("stopped before step ").and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{text}"));
    let events = timeline(client).await;
    assert_eq!(messages(&events).len(), step, "{events:?}");
    assert!(events.iter().all(|(kind, _)| kind != "finished"), "{events:?}");
    client.refresh().await.unwrap();
    wait_for_status(client, &text).await;
    browser.close().await.expect("close the Chromium session");
}

/// The custom-agents example from the Workflows view: it waits for its modules, which the
/// user adds through the modules input, then runs with the agents' rows filled.
#[tokio::test(flavor = "multi_thread")]
async fn custom_agents_run_from_the_workflows_view() {
    let (_server, url) = hearth_serve();
    let browser = open_in_chromium(&format!("{url}?backend=cpu")).await;
    let client = &browser.client;
    browser.wait_for_model(WAIT).await.unwrap_or_else(|e| panic!("{e}"));
    let example = client.find(Locator::Id("workflow-example")).await.unwrap();
    example.select_by_value("custom-agents").await.unwrap();
    wait_for_status(client, "agent stats runs the module ../target/agents/word_stats.wasm: add that .wasm file").await;
    // Both files at once (WebDriver takes one path per line for a `multiple` input).
    let paths = [hearth_tests::agent_module("word_stats"), hearth_tests::agent_module("keywords")];
    let paths: Vec<String> = paths.iter().map(|p| p.canonicalize().unwrap().display().to_string()).collect();
    client.find(Locator::Id("workflow-modules")).await.unwrap().send_keys(&paths.join("\n")).await.unwrap();
    wait_for_status(client, "ready to run custom-agents").await;
    click(client, "workflow-run").await;
    wait_for_status(client, "finished").await;
    let said: Vec<String> =
        messages(&timeline(client).await).iter().map(|m| m.split(':').next().unwrap_or_default().to_string()).collect();
    assert_eq!(said, ["writer", "stats", "keywords", "editor"]);
    let stats = client.find(Locator::Css("#workflow-agents tr[data-agent=stats] td:nth-child(6)")).await.unwrap();
    assert!(stats.text().await.unwrap().parse::<u32>().unwrap() >= 2, "word-stats used its tools");
    browser.close().await.expect("close the Chromium session");
}

fn hearth_run(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(hearth_binary()).arg("run").args(args).output().expect("run hearth");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[test]
fn hearth_run_in_chromium_prints_the_same_transcript_twice() {
    let debate = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/debate.toml");
    let args = ["--engine", "chromium", "--workflow", debate, "--seed", "1", "--backend", "cpu"];
    let (code, first, stderr) = hearth_run(&args);
    assert_eq!(code, 0, "{stderr}");
    let (code, second, stderr) = hearth_run(&args);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(first, second, "same workflow, seed and backend: the same bytes");
    let lines: Vec<Value> = first.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["event"], "started");
    assert_eq!(lines[0]["seed"], 1);
    assert_eq!(lines.last().unwrap()["event"], "finished", "{first}");
    assert_eq!(lines.last().unwrap()["messages"], 5, "{first}");
    // The single-threaded build, its agents on the message-passing bus: the same run.
    let (code, single, stderr) = hearth_run(&[&args[..], &["--bus", "messages"]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(after_start(&single), after_start(&first), "the message-passing bus against the shared one");

    // Bad input fails before any browser starts, naming the problem.
    let files = tempfile::tempdir().unwrap();
    let bad = files.path().join("bad.toml");
    std::fs::write(&bad, "[workflow]\nname = \"x\"\n").unwrap();
    let (code, out, stderr) = hearth_run(&["--engine", "chromium", "--workflow", bad.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (2, ""), "{stderr}");
    assert!(stderr.starts_with(&format!("hearth: {}: ", bad.display())), "{stderr}");
    let missing = files.path().join("missing-module.toml");
    std::fs::write(&missing, "[workflow]\nname = \"m\"\ntask = \"t\"\n[topology]\nkind = \"sequential\"\norder = [\"x\"]\n[[agents]]\nname = \"x\"\nmodule = \"nowhere.wasm\"\n").unwrap();
    let (code, out, stderr) = hearth_run(&["--engine", "chromium", "--workflow", missing.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (2, ""), "{stderr}");
    assert!(stderr.starts_with("hearth: agent x: cannot read its module nowhere.wasm"), "{stderr}");
}

/// The transcript's lines after `started` (which names the backend, native or in the page).
fn after_start(out: &str) -> Vec<&str> {
    out.lines().skip(1).collect()
}

/// Custom agents that trap, panic, loop (past their instructions, or their wall-clock time),
/// hoard memory or write outside it, beside a well-behaved one: the same faults, restarts and
/// messages in the page (each module in an agent's Web Worker, its wasm interpreted with the
/// same budgets) as natively.
#[test]
fn custom_agent_modules_run_in_the_page_as_natively() {
    let files = tempfile::tempdir().unwrap();
    let faults = files.path().join("faults.toml");
    let faulty = hearth_tests::agent_module("faulty_agent");
    std::fs::write(&faults, hearth_tests::FAULTY_AGENTS.replace("{faulty}", &faulty.display().to_string())).unwrap();
    let faults = faults.to_str().unwrap();
    let (code, native, stderr) = hearth_run(&["--engine", "native", "--backend", "cpu", "--workflow", faults]);
    assert_eq!(code, 0, "{stderr}");
    let (code, page, stderr) = hearth_run(&["--engine", "chromium", "--backend", "cpu", "--workflow", faults]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(after_start(&page), after_start(&native), "the page's transcript is the native one");
    // Without shared memory (the single-threaded build: each agent a worker with a runtime of
    // its own, messages by postMessage, a worker past its budget terminated), byte for byte
    // what the native message-passing bus gives.
    let bus = ["--bus", "messages", "--backend", "cpu", "--workflow", faults];
    let (code, page, stderr) = hearth_run(&[&["--engine", "chromium"], &bus[..]].concat());
    assert_eq!(code, 0, "{stderr}");
    let (code, native, stderr) = hearth_run(&[&["--engine", "native"], &bus[..]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(page.starts_with('{') && page.lines().next().unwrap().contains("\"message_passing\""), "{page}");
    assert_eq!(page, native, "the page's message-passing transcript is the native one");
    // What natively is checked in detail (tests/agents.rs) happened: each misbehaving agent
    // faulted, and the good one spoke in both rounds.
    let events: Vec<Value> = page.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for agent in ["trapper", "spinner", "stuck", "hog", "flaky", "panicker"] {
        assert!(events.iter().any(|e| e["event"] == "fault" && e["agent"] == agent), "{agent}: {page}");
    }
    let good = events.iter().filter(|e| e["event"] == "message" && e["from"] == "good").count();
    assert_eq!(good, 2, "{page}");
    assert_eq!(events.last().unwrap()["event"], "finished", "{page}");

    // The example: word-stats and keywords (which asks the LLM) between two LLM agents.
    hearth_tests::agent_module("word_stats");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/custom-agents.toml");
    let (code, out, stderr) = hearth_run(&["--engine", "chromium", "--backend", "cpu", "--workflow", example]);
    assert_eq!(code, 0, "{stderr}");
    let events: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let messages: Vec<&Value> = events.iter().filter(|e| e["event"] == "message").collect();
    let from: Vec<&str> = messages.iter().map(|m| m["from"].as_str().unwrap()).collect();
    assert_eq!(from, ["writer", "stats", "keywords", "editor"], "{out}");
    let words = messages[0]["content"].as_str().unwrap().split_whitespace().count();
    let stats = messages[1]["content"].as_str().unwrap();
    assert!(stats.starts_with(&format!("{words} words in ")), "word-stats counted the writer's words: {stats}");
    let keywords = events.iter().filter(|e| e["agent"] == "keywords");
    let calls: Vec<&str> = keywords.filter_map(|e| e["event"].as_str()).collect();
    assert!(calls.contains(&"llm_call") && calls.contains(&"tool_call"), "keywords asked the LLM: {out}");
    assert!(messages[2]["content"].as_str().unwrap().starts_with("Keywords: "), "{out}");
}
