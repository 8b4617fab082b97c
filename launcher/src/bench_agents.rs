//! `hearth bench --agents`: the agents' plumbing, natively.
//!
//! - The bus between two threads, shared-memory rings against message passing (`mpsc`, the
//!   native stand-in for `postMessage`): one-way latency (half a ping-pong round trip, p50 and
//!   p99) and messages per second streamed one way.
//! - The LLM service: four agents' requests decoded as one batch against the same four run one
//!   after another, in total completion tokens per second.

use hearth_core::mapped_file::MappedFile;
use std::path::Path;
use std::time::{Duration, Instant};

use hearth_agents::bus::{AgentPort, ChannelBus, HubPort, SharedBus, SharedBusConfig};
use hearth_agents::hub_messages::LlmRequest;
use hearth_core::engine::{Engine, native_clock};

use crate::bench::BenchError;

/// One transport's figures.
pub struct BusFigures {
    pub transport: &'static str,
    pub p50_us: f64,
    pub p99_us: f64,
    pub messages_per_s: f64,
}

const WAIT: Option<Duration> = Some(Duration::from_secs(10));

/// Latency and throughput of `hub` ↔ `agent` with 64-byte messages.
fn measure(transport: &'static str, hub: Box<dyn HubPort>, agent: Box<dyn AgentPort>) -> BusFigures {
    const PINGS: usize = 20_000;
    const STREAM: usize = 200_000;
    let msg = [7u8; 64];
    let echo = std::thread::spawn(move || {
        for _ in 0..PINGS {
            let m = agent.recv(WAIT).expect("a ping");
            agent.send(&m, WAIT).expect("a pong");
        }
        for _ in 0..STREAM {
            agent.send(&msg, WAIT).expect("a streamed message");
        }
    });
    let mut one_way = Vec::with_capacity(PINGS);
    for _ in 0..PINGS {
        let t = Instant::now();
        hub.send(0, &msg, WAIT).expect("a ping");
        hub.recv(WAIT).expect("a pong");
        one_way.push(t.elapsed().as_secs_f64() * 1e6 / 2.0);
    }
    let t = Instant::now();
    for _ in 0..STREAM {
        hub.recv(WAIT).expect("a streamed message");
    }
    let messages_per_s = STREAM as f64 / t.elapsed().as_secs_f64();
    let _ = echo.join();
    one_way.sort_by(f64::total_cmp);
    let at = |q: f64| one_way[((one_way.len() - 1) as f64 * q) as usize];
    BusFigures { transport, p50_us: at(0.5), p99_us: at(0.99), messages_per_s }
}

pub fn bus() -> Vec<BusFigures> {
    let (shared, mut ports) = SharedBus::new(1, SharedBusConfig::default());
    let a = measure("shared memory rings", Box::new(shared), ports.remove(0));
    let (channels, mut ports) = ChannelBus::new(1);
    let b = measure("message passing (mpsc)", Box::new(channels), ports.remove(0));
    vec![a, b]
}

/// Total completion tokens/s of four agents' requests: (one after another, batched).
pub fn llm(model: &Path, gen_tokens: usize) -> Result<(f64, f64), BenchError> {
    let file = MappedFile::open(model).map_err(|e| BenchError::Open(model.display().to_string(), e))?;
    let mut engine = Engine::load(&file, 2048, native_clock)?;
    let topics = ["the sea", "the hills", "a city at night", "an old library"];
    let requests: Vec<_> = topics
        .iter()
        .enumerate()
        .map(|(i, topic)| {
            let (prompt, mut params) = LlmRequest {
                system: "You are a poet.".into(),
                prompt: format!("Write a poem about {topic}."),
                max_tokens: gen_tokens,
                temperature: 0.8,
                top_k: 40,
                top_p: 0.95,
                seed: i as u64,
                ..LlmRequest::default()
            }
            .generation();
            params.ignore_eos = true;
            (prompt, params)
        })
        .collect();
    let tokens = |done: &[Result<hearth_core::engine::Completion, _>]| {
        done.iter().map(|r| r.as_ref().map_or(0, |c| c.completion_tokens)).sum::<usize>() as f64
    };
    // Warm up, then measure each way once.
    pollster::block_on(engine.generate_batch(&requests[..2]))?;
    let t = Instant::now();
    let mut one_by_one = Vec::new();
    for r in &requests {
        one_by_one.extend(pollster::block_on(engine.generate_batch(std::slice::from_ref(r)))?);
    }
    let sequential = tokens(&one_by_one) / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let batched = pollster::block_on(engine.generate_batch(&requests))?;
    let batched = tokens(&batched) / t.elapsed().as_secs_f64();
    Ok((sequential, batched))
}

/// Decode tokens/s of the same sampled chat reply, free and constrained by a JSON schema:
/// (free, constrained), each the mean over a few seeds.
pub fn constrained(model: &Path) -> Result<(f64, f64), BenchError> {
    use hearth_core::chat_template::ChatMessage;
    use hearth_core::engine::{GenerateParams, JsonSchemaFormat, Prompt, ResponseFormat};
    use hearth_core::sampler::SamplerConfig;
    let file = MappedFile::open(model).map_err(|e| BenchError::Open(model.display().to_string(), e))?;
    let mut engine = Engine::load(&file, 2048, native_clock)?;
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 24},
            "age": {"type": "integer"},
            "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 16}, "maxItems": 3}
        },
        "required": ["name", "age", "hobbies"]
    });
    let prompt = Prompt::Chat(vec![ChatMessage::new("user", "Describe a person as JSON.")]);
    let mut rate = |format: ResponseFormat| -> Result<f64, BenchError> {
        let (mut tokens, mut ms) = (0usize, 0.0f64);
        for seed in 0..4 {
            let params = GenerateParams {
                max_tokens: 64,
                sampler: SamplerConfig { temperature: 0.8, top_k: 40, seed, ..SamplerConfig::default() },
                response_format: format.clone(),
                ..GenerateParams::default()
            };
            let done = pollster::block_on(engine.generate(&prompt, &params, |_| std::ops::ControlFlow::Continue(())))?;
            tokens += done.completion_tokens.saturating_sub(1);
            ms += done.timings.decode_ms;
        }
        Ok(tokens as f64 * 1000.0 / ms)
    };
    let free = rate(ResponseFormat::Text)?;
    let constrained =
        rate(ResponseFormat::JsonSchema { json_schema: JsonSchemaFormat { name: String::new(), schema } })?;
    Ok((free, constrained))
}
