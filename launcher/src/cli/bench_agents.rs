//! `hearth bench --agents`: the agents' bus (latency, throughput) natively and in Chromium,
//! four agents' LLM requests batched against one after another, and constrained decoding.

use std::process::ExitCode;
use std::time::Duration;

use hearth::engines::{self, EngineKind};
use hearth::{bench_agents, llm};
use hearth_api::protocol::BusFigures;
use hearth_core::engine::BackendChoice;

use super::{fail, runtime, say, serve_on_free_port};

pub fn run(gen_tokens: usize, native_only: bool) -> ExitCode {
    eprintln!("bench: the bus between two threads…");
    say("| bus (two threads, 64-byte messages) | one-way p50 | one-way p99 | messages/s |");
    say("| --- | --- | --- | --- |");
    let figures = bench_agents::bus();
    for f in &figures {
        say(&format!("| {} | {:.2} µs | {:.2} µs | {:.0} |", f.transport, f.p50_us, f.p99_us, f.messages_per_s));
    }
    say(&format!(
        "\nshared memory ÷ message passing: latency {:.2}×, throughput {:.2}×\n",
        figures[0].p50_us / figures[1].p50_us,
        figures[0].messages_per_s / figures[1].messages_per_s
    ));
    if !native_only {
        eprintln!("bench: the bus in headless Chromium, between the engine worker and another worker…");
        match bus_in_chromium() {
            Ok(figures) if figures.len() == 2 => {
                say("| bus in Chromium (two workers, 64-byte messages) | one-way p50 | one-way p99 | messages/s |");
                say("| --- | --- | --- | --- |");
                for f in &figures {
                    say(&format!(
                        "| {} | {:.1} µs | {:.1} µs | {:.0} |",
                        f.transport, f.p50_us, f.p99_us, f.messages_per_s
                    ));
                }
                say(&format!(
                    "\nshared-memory bus ÷ postMessage: latency {:.2}×, throughput {:.2}×\n",
                    figures[0].p50_us / figures[1].p50_us,
                    figures[0].messages_per_s / figures[1].messages_per_s
                ));
            }
            Ok(figures) => eprintln!("hearth: the page measured {} transports, not 2", figures.len()),
            Err(e) => return fail(e),
        }
    }
    eprintln!("bench: four agents' LLM requests, {gen_tokens} tokens each…");
    match bench_agents::llm(&llm::model_path(None), gen_tokens) {
        Ok((sequential, batched)) => {
            say("| 4 agents' requests | completion tokens/s |");
            say("| --- | --- |");
            say(&format!("| one after another | {sequential:.1} |"));
            say(&format!("| one batch | {batched:.1} |"));
            say(&format!("\nbatched ÷ one after another: {:.2}×\n", batched / sequential));
        }
        Err(e) => return fail(e),
    }
    eprintln!("bench: decoding free and constrained by a JSON schema…");
    match bench_agents::constrained(&llm::model_path(None)) {
        Ok((free, constrained)) => {
            say("| decode, sampled chat reply | tokens/s |");
            say("| --- | --- |");
            say(&format!("| free text | {free:.1} |"));
            say(&format!("| constrained by a JSON schema | {constrained:.1} |"));
            say(&format!("\nconstrained ÷ free: {:.2}×", constrained / free));
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// The agents' bus against `postMessage` in the app's page in headless Chromium.
fn bus_in_chromium() -> Result<Vec<BusFigures>, String> {
    let runtime = runtime().ok_or("no async runtime")?;
    runtime.block_on(async {
        let url = serve_on_free_port(None).await?;
        let page = engines::open_page(EngineKind::Chromium, &engines::page_url(&url, BackendChoice::Cpu)).await?;
        hearth::page::wait_for_model(page.as_ref(), Duration::from_secs(300)).await.map_err(|e| e.to_string())?;
        let figures = hearth::page::run(
            page.as_ref(),
            "return await hearth.benchBus();",
            serde_json::Value::Null,
            Duration::from_secs(300),
        )
        .await
        .map_err(|e| e.to_string())?;
        serde_json::from_value(figures).map_err(|e| format!("the page's figures do not parse: {e}"))
    })
}
