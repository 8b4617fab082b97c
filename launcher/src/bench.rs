//! `hearth bench`: prefill and decode speed on the default model — natively, and in headless
//! Chromium for the threaded build (1 and 2 threads) and the single-threaded build — beside
//! llama.cpp (native, 1 thread) and wllama (the same browser, the same threads), measured in
//! the same run by scripts/bench-peers.sh, with the ratios.
//!
//! Each figure is one measured run after a warm-up: prefill is the prompt's tokens (from
//! bench/prompt.txt, cut to `prompt_tokens`) from an empty KV cache; decode is `gen_tokens`
//! single-token steps (sampling included), greedy, past any end-of-generation token.

use hearth_core::mapped_file::MappedFile;
use std::ops::ControlFlow;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hearth_core::engine::{BackendChoice, Completion, Engine, GenerateParams, Prompt, native_clock};
use hearth_core::kernels::cpu::SimdLevel;
use hearth_core::kernels::gpu::{GpuContext, GpuOptions};
use serde::{Deserialize, Serialize};
use serde_json::json;
use thiserror::Error;

use crate::chromium::{Browser, ChromiumError};

/// The prompt text every engine tokenizes (and cuts to the first `prompt_tokens` tokens).
pub const PROMPT: &str = include_str!("../../bench/prompt.txt");
const PEERS_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/bench-peers.sh");

#[derive(Debug, Error)]
pub enum BenchError {
    #[error("cannot open the model {0}: {1}")]
    Open(String, std::io::Error),
    #[error(transparent)]
    Engine(#[from] hearth_core::engine::EngineError),
    #[error("bench/prompt.txt is {have} tokens; {want} were asked for")]
    PromptTooShort { have: usize, want: usize },
    #[error("cannot make a thread pool: {0}")]
    Pool(String),
    #[error("{0}")]
    Load(String),
    #[error("{0}")]
    Chromium(#[from] ChromiumError),
    #[error("the browser's answer is not timings: {0}")]
    Answer(String),
}

/// One line of the table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Figures {
    pub engine: String,
    /// `native` or `chromium`.
    #[serde(rename = "where")]
    pub place: String,
    pub threads: usize,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
    /// The process's peak resident memory by the end of the run, where measured.
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
    /// Milliseconds of one decode step per op family, slowest first, where measured.
    #[serde(default)]
    pub step_ops: Vec<(String, f64)>,
}

#[derive(Deserialize)]
struct RunTimings {
    prefill_tokens: usize,
    prefill_ms: f64,
    decode_ms: f64,
}

fn figures(engine: &str, place: &str, threads: usize, t: &RunTimings, gen_tokens: usize) -> Figures {
    let per_s = |n: usize, ms: f64| if ms > 0.0 { n as f64 * 1000.0 / ms } else { 0.0 };
    Figures {
        engine: engine.into(),
        place: place.into(),
        threads,
        prefill_tok_s: per_s(t.prefill_tokens, t.prefill_ms),
        decode_tok_s: per_s(gen_tokens, t.decode_ms),
        peak_rss_bytes: None,
        step_ops: Vec::new(),
    }
}

/// Parameters of the decode run: `gen_tokens` forward passes need one more sampled token.
fn decode_params(gen_tokens: usize) -> GenerateParams {
    GenerateParams { max_tokens: gen_tokens + 1, ignore_eos: true, ..GenerateParams::default() }
}

/// This machine's CPU as the table's heading names it: its model, and the SIMD extensions
/// that decide which kernels run (Hearth's and the peers'), from /proc/cpuinfo where there
/// is one.
pub fn cpu_description() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
    };
    let model = field("model name").unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let flags = field("flags").or_else(|| field("Features")).unwrap_or_default();
    const NOTABLE: [&str; 9] =
        ["avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_int8", "asimddp", "i8mm"];
    let has: Vec<&str> = NOTABLE.into_iter().filter(|f| flags.split_whitespace().any(|g| g == *f)).collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{model}, {cores} cores ({}); Hearth's CPU kernels: {}", has.join(" "), SimdLevel::detected())
}

/// Hearth natively on `threads` threads.
pub fn native(model: &Path, prompt_tokens: usize, gen_tokens: usize, threads: usize) -> Result<Figures, BenchError> {
    let file = MappedFile::open(model).map_err(|e| BenchError::Open(model.display().to_string(), e))?;
    let pool =
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| BenchError::Pool(e.to_string()))?;
    // The engine is made and used inside the pool (it is not Send: it may hold a GPU).
    pool.install(|| {
        let mut engine = Engine::load(&file, prompt_tokens + gen_tokens + 8, native_clock)?;
        let (_, t) = timed_run(&mut engine, prompt_tokens, gen_tokens)?;
        let step_ops = pollster::block_on(engine.profile_decode(native_clock))?;
        let place = format!("native, {}", SimdLevel::detected());
        Ok(Figures {
            peak_rss_bytes: crate::llm::peak_rss(),
            step_ops: step_ops.into_iter().map(|(op, ms)| (op.to_string(), ms)).collect(),
            ..figures("hearth", &place, threads, &t, gen_tokens)
        })
    })
}

/// A warm-up generation, then the measured one: `prompt_tokens` of the bench prompt and
/// `gen_tokens` decoded. Returns the measured completion and its timings.
fn timed_run(
    engine: &mut Engine,
    prompt_tokens: usize,
    gen_tokens: usize,
) -> Result<(Completion, RunTimings), BenchError> {
    let ids = engine.tokenizer().encode(PROMPT, true, false);
    if ids.len() < prompt_tokens {
        return Err(BenchError::PromptTooShort { have: ids.len(), want: prompt_tokens });
    }
    let ids = ids[..prompt_tokens].to_vec();
    let params = decode_params(gen_tokens);
    // The warm-up's prompt starts differently, so the measured run reuses no cache.
    let warm_up: Vec<u32> = ids.iter().rev().copied().collect();
    pollster::block_on(engine.generate(&Prompt::Tokens(warm_up), &params, |_| ControlFlow::Continue(())))?;
    let done = pollster::block_on(engine.generate(&Prompt::Tokens(ids), &params, |_| ControlFlow::Continue(())))?;
    let t = done.timings;
    let t = RunTimings { prefill_tokens: t.prefill_tokens, prefill_ms: t.prefill_ms, decode_ms: t.decode_ms };
    Ok((done, t))
}

/// What `hearth bench --backend gpu` reports for one run on a GPU.
#[derive(Clone, Debug)]
pub struct GpuFigures {
    pub figures: Figures,
    pub adapter: String,
    /// The kernels dequantised f16-scaled weights in f16 (`shader-f16`).
    pub shader_f16: bool,
    /// Bytes of weights on the device: what each decode step reads at least once.
    pub weight_bytes: u64,
    /// Bytes per second a buffer copy moves on this device (read + written).
    pub copy_bandwidth: f64,
    /// Kernel families by GPU time in one decode step, slowest first (milliseconds).
    pub kernels: Vec<(&'static str, f64)>,
}

impl GpuFigures {
    /// Weight bytes read per second while decoding.
    pub fn achieved_bandwidth(&self) -> f64 {
        self.weight_bytes as f64 * self.figures.decode_tok_s
    }
}

/// Hearth natively on the GPU through wgpu (Vulkan; lavapipe where there is no GPU), on a
/// device opened with `options`.
pub fn native_gpu(
    model: &Path,
    prompt_tokens: usize,
    gen_tokens: usize,
    options: GpuOptions,
) -> Result<GpuFigures, BenchError> {
    let file = MappedFile::open(model).map_err(|e| BenchError::Open(model.display().to_string(), e))?;
    let ctx = std::rc::Rc::new(
        pollster::block_on(GpuContext::with_options(options))
            .map_err(|e| BenchError::Engine(hearth_core::engine::EngineError::NoGpu(e.to_string())))?,
    );
    let mut engine = Engine::load_on(
        &file,
        prompt_tokens + gen_tokens + 8,
        native_clock,
        BackendChoice::Gpu,
        Ok(std::rc::Rc::clone(&ctx)),
    )?;
    let (done, t) = timed_run(&mut engine, prompt_tokens, gen_tokens)?;
    let last = done.tokens.last().copied().unwrap_or(0);
    let pos = done.prompt_tokens + done.tokens.len() - 1;
    let gpu = engine.gpu_model_mut().ok_or_else(|| BenchError::Answer("the model left the GPU".into()))?;
    let weight_bytes = gpu.weight_bytes();
    let kernels =
        pollster::block_on(gpu.profile_decode(last, pos, native_clock)).map_err(|e| BenchError::Engine(e.into()))?;
    let shader_f16 = ctx.adapter().shader_f16;
    let engine_name = if shader_f16 { "hearth (GPU, f16 weights)" } else { "hearth (GPU)" };
    Ok(GpuFigures {
        figures: figures(engine_name, "native", 1, &t, gen_tokens),
        adapter: format!("{} ({}, {})", ctx.adapter().name, ctx.adapter().backend, ctx.adapter().device_type),
        shader_f16,
        weight_bytes,
        copy_bandwidth: ctx.copy_bandwidth().map_err(|e| BenchError::Answer(e.to_string()))?,
        kernels,
    })
}

/// The GPU runs as a Markdown table: speed, and decode's weight reads against the device's
/// copy bandwidth.
pub fn gpu_table(runs: &[GpuFigures]) -> String {
    let mut out = String::from(
        "| engine | where | adapter | prefill tok/s | decode tok/s | weights MB | weights read GB/s \
         | copy GB/s | fraction | slowest kernels (ms per decode step) |\n|---|---|---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in runs {
        let kernels: Vec<String> = r.kernels.iter().take(3).map(|(k, ms)| format!("{k} {ms:.3}")).collect();
        out.push_str(&format!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0}% | {} |\n",
            r.figures.engine,
            r.figures.place,
            r.adapter,
            r.figures.prefill_tok_s,
            r.figures.decode_tok_s,
            r.weight_bytes as f64 / 1e6,
            r.achieved_bandwidth() / 1e9,
            r.copy_bandwidth / 1e9,
            r.achieved_bandwidth() / r.copy_bandwidth * 100.0,
            kernels.join(", "),
        ));
    }
    out
}

/// Hearth in headless Chromium: the app at `url` (which serves the default model), with
/// `query` picking the build and threads.
pub async fn chromium(
    url: &str,
    query: &str,
    threads: usize,
    prompt_tokens: usize,
    gen_tokens: usize,
) -> Result<Figures, BenchError> {
    let limit = Duration::from_secs(900);
    let browser = Browser::open(&format!("{url}?{query}")).await?;
    browser.wait_for_model(limit).await?;
    let body = "const [prompt, promptTokens, params] = args; \
                const ids = (await hearth.tokenize(prompt, true)).slice(0, promptTokens); \
                if (ids.length < promptTokens) throw new Error(`the prompt is only ${ids.length} tokens`); \
                await hearth.generate({ tokens: [...ids].reverse() }, params); \
                const done = await hearth.generate({ tokens: ids }, params); \
                document.getElementById('profile-step').click(); \
                let table; \
                while (!(table = document.getElementById('step-profile'))) { \
                  const e = document.getElementById('step-profile-error'); if (e) throw new Error(e.textContent); \
                  await new Promise(r => setTimeout(r, 100)); } \
                const ops = [...table.querySelectorAll('tr[data-op]')] \
                  .map(r => [r.dataset.op, Number(r.dataset.ms)]); \
                return { timings: done.timings, ops };";
    let args = json!([PROMPT, prompt_tokens, decode_params(gen_tokens)]);
    let answer = browser.run(body, args, limit).await;
    let _ = browser.close().await;
    #[derive(Deserialize)]
    struct Answer {
        timings: RunTimings,
        ops: Vec<(String, f64)>,
    }
    let a: Answer = serde_json::from_value(answer?).map_err(|e| BenchError::Answer(e.to_string()))?;
    let build = if query.contains("single") { "hearth (single-threaded build)" } else { "hearth (threaded build)" };
    Ok(Figures { step_ops: a.ops, ..figures(build, "chromium", threads, &a.timings, gen_tokens) })
}

/// Where one decode step goes in each Hearth run that was profiled: its op families, slowest
/// first, in milliseconds and shares of the step.
pub fn step_profiles(rows: &[Figures]) -> String {
    let mut out = String::new();
    for f in rows.iter().filter(|f| !f.step_ops.is_empty()) {
        let total: f64 = f.step_ops.iter().map(|(_, ms)| ms).sum();
        let ops: Vec<String> =
            f.step_ops.iter().map(|(op, ms)| format!("{op} {ms:.2} ({:.0}%)", 100.0 * ms / total.max(1e-9))).collect();
        out.push_str(&format!(
            "- {} ({}, {} thread(s)): {total:.2} ms: {}\n",
            f.engine,
            f.place,
            f.threads,
            ops.join(", ")
        ));
    }
    out
}

/// A peer's line from scripts/bench-peers.sh, or why it could not run.
#[derive(Clone, Debug, Deserialize)]
pub struct PeerLine {
    pub peer: String,
    #[serde(default)]
    pub version: String,
    #[serde(rename = "where", alias = "place", default)]
    pub place: String,
    #[serde(default)]
    pub threads: usize,
    #[serde(default)]
    pub prefill_tok_s: f64,
    #[serde(default)]
    pub decode_tok_s: f64,
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
    pub error: Option<String>,
}

/// Runs scripts/bench-peers.sh (llama.cpp natively from source and prebuilt, wllama in
/// Chromium) on the default model,
/// or on `model` with llama.cpp's prebuilt npm build (node-llama-cpp) alone.
pub fn peers(prompt_tokens: usize, gen_tokens: usize, model: Option<&Path>) -> Result<Vec<PeerLine>, String> {
    let mut args =
        vec!["--prompt-tokens".to_string(), prompt_tokens.to_string(), "--gen-tokens".into(), gen_tokens.to_string()];
    if let Some(model) = model {
        args.extend(["--model".into(), model.display().to_string(), "--only".into(), "llama.cpp-node".into()]);
    }
    let output = Command::new("bash")
        .arg(PEERS_SCRIPT)
        .args(&args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {PEERS_SCRIPT}: {e}"))?;
    if !output.status.success() {
        return Err(format!("{PEERS_SCRIPT} failed ({})", output.status));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.trim_start().starts_with('{'))
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}

/// The results as a Markdown table, each Hearth line with its ratio to llama.cpp natively at
/// the same threads (else at 1 thread) and, in the browser, to wllama at the same threads;
/// and each run's peak resident memory over the size of the model file (`model_bytes`).
pub fn table(hearth: &[Figures], peers: &[PeerLine], model_bytes: u64) -> String {
    let ok = |p: &&PeerLine| p.error.is_none();
    // The ratios are against node-llama-cpp's prebuilt build where it ran (it picks the best
    // CPU variant at run time), else against any llama.cpp.
    let llama_at = |threads| {
        let at = |p: &&PeerLine| p.peer.starts_with("llama.cpp") && p.threads == threads;
        let prebuilt = |p: &&PeerLine| at(p) && p.peer.contains("node-llama-cpp");
        peers.iter().filter(ok).find(prebuilt).or_else(|| peers.iter().filter(ok).find(at))
    };
    let memory =
        |peak: Option<u64>| peak.map_or(String::new(), |b| format!("{:.2}", b as f64 / model_bytes.max(1) as f64));
    let wllama = |threads| peers.iter().filter(ok).find(|p| p.peer == "wllama" && p.threads == threads);
    let ratio = |a: f64, b: Option<f64>| b.filter(|b| *b > 0.0).map_or("–".to_string(), |b| format!("{:.2}×", a / b));
    let mut out = String::from(
        "| engine | where | threads | prefill tok/s | decode tok/s | prefill ÷ llama.cpp | decode ÷ llama.cpp \
         | prefill ÷ wllama | decode ÷ wllama | peak memory ÷ file |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for f in hearth {
        let w = if f.place == "chromium" { wllama(f.threads) } else { None };
        let llama = llama_at(f.threads).or_else(|| llama_at(1));
        out.push_str(&format!(
            "| {} | {} | {} | {:.1} | {:.1} | {} | {} | {} | {} | {} |\n",
            f.engine,
            f.place,
            f.threads,
            f.prefill_tok_s,
            f.decode_tok_s,
            ratio(f.prefill_tok_s, llama.map(|l| l.prefill_tok_s)),
            ratio(f.decode_tok_s, llama.map(|l| l.decode_tok_s)),
            ratio(f.prefill_tok_s, w.map(|w| w.prefill_tok_s)),
            ratio(f.decode_tok_s, w.map(|w| w.decode_tok_s)),
            memory(f.peak_rss_bytes),
        ));
    }
    for p in peers {
        match &p.error {
            None => out.push_str(&format!(
                "| {} {} | {} | {} | {:.1} | {:.1} | | | | | {} |\n",
                p.peer,
                p.version,
                p.place,
                p.threads,
                p.prefill_tok_s,
                p.decode_tok_s,
                memory(p.peak_rss_bytes)
            )),
            Some(e) => out.push_str(&format!("| {} | could not run: {e} | | | | | | | | |\n", p.peer)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(peer: &str, threads: usize, prefill: f64, decode: f64) -> PeerLine {
        PeerLine {
            peer: peer.into(),
            version: String::new(),
            place: "native".into(),
            threads,
            prefill_tok_s: prefill,
            decode_tok_s: decode,
            peak_rss_bytes: None,
            error: None,
        }
    }

    #[test]
    fn ratios_are_against_the_prebuilt_llama_cpp_at_the_same_threads() {
        let hearth = Figures {
            engine: "hearth".into(),
            place: "native, avx2".into(),
            threads: 2,
            prefill_tok_s: 300.0,
            decode_tok_s: 90.0,
            peak_rss_bytes: None,
            step_ops: Vec::new(),
        };
        let peers = [
            peer("llama.cpp", 1, 100.0, 50.0),
            peer("llama.cpp (node-llama-cpp 3.22.1, CPU)", 1, 150.0, 45.0),
            peer("llama.cpp (node-llama-cpp 3.22.1, CPU)", 2, 200.0, 60.0),
        ];
        let table = table(std::slice::from_ref(&hearth), &peers, 0);
        let line = table.lines().find(|l| l.starts_with("| hearth |")).unwrap();
        assert!(line.contains("| 1.50× | 1.50× |"), "{line}");
        // Without the prebuilt build, the other llama.cpp at 1 thread.
        let table = super::table(&[hearth], &peers[..1], 0);
        let line = table.lines().find(|l| l.starts_with("| hearth |")).unwrap();
        assert!(line.contains("| 3.00× | 1.80× |"), "{line}");
    }
}
