//! `hearth generate`: a prompt completed natively, or by the engine in the app's page in a web
//! engine (`--engine chromium|servo`), streamed to stdout or printed as one JSON object.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use hearth::engines::{self, EngineKind, PageModel};
use hearth::llm;
use hearth_core::chat_template::ChatMessage;
use hearth_core::engine::{BackendChoice, GenerateParams, JsonSchemaFormat, Prompt, ResponseFormat};
use hearth_core::sampler::SamplerConfig;

use super::{context, fail, run_async, say, serve_on_free_port};

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// A GGUF file, or a shipped model by id (gemma-3-270m-q4_k_m); the default model if left out.
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long)]
    prompt: String,
    /// Send the prompt as one user message through the model's chat template.
    #[arg(long)]
    chat: bool,
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// 0 keeps every token.
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 0.0)]
    min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop before this text (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Keep going past the end-of-generation token.
    #[arg(long)]
    ignore_eos: bool,
    /// Read special-token text in the prompt (`<|im_start|>`) as characters, not as the
    /// special tokens that llama.cpp and vLLM read it as.
    #[arg(long)]
    no_special: bool,
    /// Positions of context (the KV cache's size); at most the model's own. 4096 natively
    /// and 2048 in a page if left out.
    #[arg(long)]
    ctx: Option<usize>,
    /// With --json: the N most likely tokens and their logits at each step.
    #[arg(long, default_value_t = 0)]
    top_logits: usize,
    /// Print one JSON object (text, token ids, counts, timings) instead of streaming text.
    #[arg(long)]
    json: bool,
    /// Constrain the output to any JSON object.
    #[arg(long, conflicts_with = "json_schema")]
    json_object: bool,
    /// Constrain the output to JSON that this JSON Schema file accepts.
    #[arg(long)]
    json_schema: Option<PathBuf>,
    /// auto: a hardware GPU when there is one and the model fits, else the CPU.
    #[arg(long, default_value = "auto")]
    backend: BackendChoice,
    /// native: the core without a web engine; chromium or servo: the app's page in that
    /// engine (which reads --model's file from this hearth, for this session only).
    #[arg(long, default_value = "native")]
    engine: EngineKind,
}

pub fn run(args: GenerateArgs) -> ExitCode {
    let response_format = match (args.json_object, &args.json_schema) {
        (true, _) => ResponseFormat::JsonObject,
        (false, None) => ResponseFormat::Text,
        (false, Some(path)) => match llm::read_schema(path) {
            Ok(schema) => ResponseFormat::JsonSchema { json_schema: JsonSchemaFormat { name: String::new(), schema } },
            Err(e) => return fail(e),
        },
    };
    let sampler = SamplerConfig {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        repeat_penalty: args.repeat_penalty,
        seed: args.seed,
        ..Default::default()
    };
    let params = GenerateParams {
        max_tokens: args.max_tokens,
        sampler,
        stop: args.stop,
        ignore_eos: args.ignore_eos,
        response_format,
        no_special: args.no_special,
        top_logits: args.top_logits,
        ..Default::default()
    };
    let (model, ctx) = (llm::model_path(args.model), context(args.ctx, args.engine));
    if args.engine != EngineKind::Native {
        return in_page(args.engine, &model, ctx, &args.prompt, args.chat, params, args.backend, args.json);
    }
    let mut out = std::io::stdout().lock();
    match llm::generate(&model, ctx, &args.prompt, args.chat, &params, args.backend, args.json, &mut out) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// `--engine chromium|servo`: the app served on a free loopback port, opened in the web
/// engine, and the prompt completed by the engine in its page.
#[allow(clippy::too_many_arguments)]
fn in_page(
    engine: EngineKind,
    model: &Path,
    n_ctx: usize,
    prompt: &str,
    chat: bool,
    params: GenerateParams,
    backend: BackendChoice,
    json: bool,
) -> ExitCode {
    let prompt = if chat { Prompt::Chat(vec![ChatMessage::new("user", prompt)]) } else { Prompt::Text(prompt.into()) };
    run_async(async move {
        let url = serve_on_free_port(PageModel::of(model)?.session).await?;
        let completer = engines::completer(engine, model, n_ctx, backend, &url).await?;
        let (deltas, mut text) = tokio::sync::mpsc::unbounded_channel::<String>();
        let printer = tokio::spawn(async move {
            while let Some(delta) = text.recv().await {
                if !json {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(delta.as_bytes()).and_then(|()| out.flush());
                }
            }
        });
        let done = completer.generate(prompt, params, deltas).await;
        let _ = printer.await;
        let done = done.map_err(|e| match e {
            hearth::completer::CompleteError::Invalid(m) | hearth::completer::CompleteError::Failed(m) => m,
        })?;
        if json {
            let state = completer.page_state().await.unwrap_or_default();
            let context = state["context"].as_u64().map(|c| c as usize);
            let memory = state.get("monitor").filter(|m| !m.is_null());
            say(&llm::completion_json(&done, completer.backend(), context, None, memory));
        }
        Ok(())
    })
}
