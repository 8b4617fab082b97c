//! The one generation API everything above the core uses: a loaded model with its tokenizer and
//! chat template, and `generate`, which takes a prompt (plain text or chat messages, as in
//! OpenAI's completions and chat-completions APIs), streams text deltas to a callback, and
//! returns the completion with its finish reason and token counts.
//!
//! The KV cache outlives a call: a prompt that starts with the tokens of the previous
//! conversation (the next turn of a chat) only runs its new tokens through the model.
//!
//! The model runs on the GPU (WebGPU through wgpu) or the CPU ([`Backend`]). A model on the
//! GPU keeps no CPU copy of its weights, only the source it was loaded from (a memory-mapped
//! file, or the page's bytes): if the device is lost mid-generation, the engine loads the
//! weights onto the CPU from there, replays the conversation so far and the generation goes
//! on. The API is async because a GPU result can only be awaited on the web; on the CPU
//! nothing ever waits.

use std::borrow::Cow;
use std::ops::ControlFlow;
use std::rc::Rc;

pub use hearth_api::generate::{
    Backend, BackendChoice, Completion, FinishReason, GenerateParams, JsonSchemaFormat, Prompt, ResponseFormat, Timings,
};
use thiserror::Error;

use crate::chat_template::{ChatMessage, ChatTemplate, ChatTemplateError};
use crate::constraint::{Grammar, JsonMatcher, SchemaError};
use crate::gguf::{ByteSource, Gguf, GgufError};
use crate::kernels::KernelError;
use crate::kernels::gpu::GpuContext;
use crate::model::ModelError;
use crate::model::config::ModelConfig;
use crate::model::transformer::{PREFILL_CHUNK, Sequence, Transformer};
use crate::model::transformer_gpu::{GpuTransformer, Prediction, Readback};
use crate::sampler::Sampler;
use crate::tokenizer::{StreamDecoder, Tokenizer, TokenizerError};
use crate::tool_call::{ToolError, ToolUse};

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    ChatTemplate(#[from] ChatTemplateError),
    #[error("the prompt is empty: it tokenizes to no tokens")]
    EmptyPrompt,
    #[error("the prompt is {prompt} tokens but the context holds {context}")]
    PromptTooLong { prompt: usize, context: usize },
    #[error("the GPU backend was asked for but there is no GPU: {0}")]
    NoGpu(String),
    #[error("the GPU was lost ({lost}) and the model could not be loaded onto the CPU: {reload}")]
    FallbackFailed { lost: String, reload: Box<EngineError> },
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Tools(#[from] ToolError),
}

/// What a request's parameters mean to the engine: its tools checked, the grammar its output
/// follows, and its prompt with the tools described.
pub trait GenerateParamsExt {
    /// What `tools` and `tool_choice` ask for, checked.
    fn tool_use(&self) -> Result<ToolUse<'_>, ToolError>;
    /// The grammar the output follows: a forced tool call's, else `response_format`'s.
    fn grammar(&self) -> Result<Option<Grammar>, EngineError>;
    /// `prompt` with the tools described at the start of its system message (one is added if
    /// there is none); as it is without tools.
    fn prompt_with_tools<'p>(&self, prompt: &'p Prompt) -> Result<Cow<'p, Prompt>, EngineError>;
}

impl GenerateParamsExt for GenerateParams {
    fn tool_use(&self) -> Result<ToolUse<'_>, ToolError> {
        ToolUse::new(&self.tools, self.tool_choice.as_ref())
    }

    fn grammar(&self) -> Result<Option<Grammar>, EngineError> {
        match self.tool_use()?.schema() {
            Some(schema) => Ok(Some(Grammar::from_schema(&schema)?)),
            None => Ok(response_grammar(&self.response_format)?),
        }
    }

    fn prompt_with_tools<'p>(&self, prompt: &'p Prompt) -> Result<Cow<'p, Prompt>, EngineError> {
        let Some(instructions) = self.tool_use()?.instructions() else { return Ok(Cow::Borrowed(prompt)) };
        let Prompt::Chat(messages) = prompt else { return Err(ToolError::NotChat.into()) };
        let mut messages = messages.clone();
        match messages.first_mut() {
            Some(first) if first.role == "system" => first.content = format!("{}\n\n{instructions}", first.content),
            _ => messages.insert(0, ChatMessage::new("system", instructions)),
        }
        Ok(Cow::Owned(Prompt::Chat(messages)))
    }
}

/// The grammar `format` asks the output to follow, if any.
fn response_grammar(format: &ResponseFormat) -> Result<Option<Grammar>, SchemaError> {
    Ok(match format {
        ResponseFormat::Text => None,
        ResponseFormat::JsonObject => Some(Grammar::json_object()),
        ResponseFormat::JsonSchema { json_schema } => Some(Grammar::from_schema(&json_schema.schema)?),
    })
}

/// A generation in progress; see [`Engine::start`].
pub struct Generation {
    params: GenerateParams,
    sampler: Sampler,
    prompt_tokens: usize,
    /// Prompt and generated tokens.
    history: Vec<u32>,
    /// The model's prediction for the next token.
    next: Prediction,
    decoder: StreamDecoder,
    text: String,
    /// Bytes of `text` handed out by [`Engine::step`].
    sent: usize,
    tokens: Vec<u32>,
    top_logits: Vec<Vec<(u32, f32)>>,
    finish: Option<FinishReason>,
    timings: Timings,
    /// Positions the generation may fill.
    context: usize,
    /// What the output must still match (constrained decoding).
    matcher: Option<JsonMatcher>,
}

impl Generation {
    /// Ends the generation for `reason`; `by_string` when a stop string cut the text.
    fn finish_with(&mut self, reason: FinishReason, by_string: bool) {
        if !by_string {
            // Bytes of an unfinished character, as U+FFFD.
            let rest = self.decoder.finish();
            self.text.push_str(&rest);
        }
        self.finish = Some(reason);
    }

    /// Why the generation ended, once it has.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    /// Tokens generated so far.
    pub fn completion_tokens(&self) -> usize {
        self.tokens.len()
    }

    /// Ends the generation; the completion is the text handed out so far.
    pub fn cancel(&mut self) {
        if self.finish.is_none() {
            self.finish = Some(FinishReason::Cancelled);
            self.text.truncate(self.sent);
        }
    }

    /// The completion; a generation that has not finished counts as cancelled.
    pub fn into_completion(mut self) -> Completion {
        self.cancel();
        let tool_calls = self.params.tool_use().map(|tools| tools.calls(&self.text)).unwrap_or_default();
        if !tool_calls.is_empty() && self.finish == Some(FinishReason::Stop) {
            self.finish = Some(FinishReason::ToolCalls);
        }
        Completion {
            finish_reason: self.finish.unwrap_or(FinishReason::Cancelled),
            tool_calls,
            text: self.text,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.tokens.len(),
            tokens: self.tokens,
            top_logits: self.top_logits,
            timings: self.timings,
        }
    }
}

/// Where the weights are.
enum Weights {
    Cpu(Box<Transformer>),
    /// On the GPU, with the source to load them onto the CPU from if the device is lost.
    Gpu {
        model: Box<GpuTransformer>,
        source: Box<dyn ByteSource>,
    },
}

/// A model ready to generate: weights, KV cache, tokenizer and chat template.
pub struct Engine {
    weights: Weights,
    config: ModelConfig,
    /// Positions of context the KV cache holds.
    n_ctx: usize,
    /// Why the engine runs on the CPU although a GPU was offered, if it does.
    backend_note: Option<String>,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    /// Tokens whose keys and values are in the KV cache, in order from position 0.
    cached: Vec<u32>,
    clock: fn() -> f64,
}

impl Engine {
    /// Loads the model in `src` onto the CPU with `n_ctx` positions of context. `clock` returns
    /// milliseconds from any fixed origin (`performance.now()` in a browser).
    pub fn load<S: ByteSource + Clone + 'static>(
        src: &S,
        n_ctx: usize,
        clock: fn() -> f64,
    ) -> Result<Self, EngineError> {
        Self::load_on(src, n_ctx, clock, BackendChoice::Cpu, Err("not asked for".into()))
    }

    /// [`Engine::load`] onto the backend `choice` names, given the GPU (or why there is none).
    /// `Auto` falls back to the CPU, saying why in [`Engine::backend_note`]; `Gpu` fails instead.
    /// On the GPU the engine keeps a clone of `src` (cheap: a mapped file, shared bytes) to
    /// reload the weights onto the CPU from, should the device be lost.
    pub fn load_on<S: ByteSource + Clone + 'static>(
        src: &S,
        n_ctx: usize,
        clock: fn() -> f64,
        choice: BackendChoice,
        gpu: Result<Rc<GpuContext>, String>,
    ) -> Result<Self, EngineError> {
        let g = Gguf::read(src)?;
        let tokenizer = Tokenizer::from_gguf(&g)?;
        let text_of = |id: Option<u32>| id.and_then(|id| tokenizer.token_text(id)).unwrap_or("").to_owned();
        let template = ChatTemplate::from_gguf(&g, &text_of(tokenizer.bos()), &text_of(tokenizer.eos()))?;
        let config = ModelConfig::from_gguf(&g)?;
        let on_gpu = |ctx| -> Result<Weights, ModelError> {
            let model = GpuTransformer::load(&g, src, ctx, n_ctx)?;
            Ok(Weights::Gpu { model: Box::new(model), source: Box::new(src.clone()) })
        };
        let on_cpu = || Transformer::load(&g, src, n_ctx).map(|m| Weights::Cpu(Box::new(m)));
        let (weights, backend_note) = match (choice, gpu) {
            (BackendChoice::Cpu, _) => (on_cpu()?, None),
            (BackendChoice::Gpu, Err(why)) => return Err(EngineError::NoGpu(why)),
            (BackendChoice::Gpu, Ok(ctx)) => (on_gpu(ctx)?, None),
            (BackendChoice::Auto, Err(why)) => (on_cpu()?, Some(format!("no GPU: {why}"))),
            (BackendChoice::Auto, Ok(ctx)) => match on_gpu(ctx) {
                Ok(weights) => (weights, None),
                Err(e) => (on_cpu()?, Some(format!("the model did not load onto the GPU: {e}"))),
            },
        };
        let n_ctx = n_ctx.clamp(1, config.context_length);
        Ok(Self { weights, config, n_ctx, backend_note, tokenizer, template, cached: Vec::new(), clock })
    }

    /// The backend the model runs on now.
    pub fn backend(&self) -> Backend {
        match self.weights {
            Weights::Cpu(_) => Backend::Cpu,
            Weights::Gpu { .. } => Backend::Gpu,
        }
    }

    fn on_gpu(&self) -> bool {
        self.backend() == Backend::Gpu
    }

    /// Why the model runs on the CPU although a GPU was offered (none available, the model
    /// did not fit, or the device was lost), if it does.
    pub fn backend_note(&self) -> Option<&str> {
        self.backend_note.as_deref()
    }

    /// The model on the GPU, when that is the backend.
    pub fn gpu_model(&self) -> Option<&GpuTransformer> {
        match &self.weights {
            Weights::Gpu { model, .. } => Some(model),
            Weights::Cpu(_) => None,
        }
    }

    /// Times one decode step, op family by op family (milliseconds, slowest first), on the
    /// backend the model runs on, at the position the next token would take (so attention
    /// costs what it would): that position of the KV cache is past the cached tokens and is
    /// overwritten by the next generation. `clock` gives milliseconds (the GPU's timings use it).
    pub async fn profile_decode(&mut self, clock: fn() -> f64) -> Result<Vec<(&'static str, f64)>, EngineError> {
        let pos = self.cached.len().min(self.n_ctx - 1);
        Ok(match &mut self.weights {
            Weights::Gpu { model, .. } => model.profile_decode(0, pos, clock).await?,
            Weights::Cpu(model) => model.profile_decode(0, pos)?,
        })
    }

    /// The model on the GPU, for measurements that run its ops directly (benchmarks); what
    /// they write past the cached tokens is overwritten by the next generation.
    pub fn gpu_model_mut(&mut self) -> Option<&mut GpuTransformer> {
        match &mut self.weights {
            Weights::Gpu { model, .. } => Some(model),
            Weights::Cpu(_) => None,
        }
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn chat_template(&self) -> &ChatTemplate {
        &self.template
    }

    /// The model's shape, as its file describes it.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Positions of context the KV cache holds.
    pub fn context_size(&self) -> usize {
        self.n_ctx
    }

    /// The prompt as the model sees it: text (chat messages rendered with the template) with
    /// BOS as the model asks and special-token text read as special tokens, as llama.cpp's
    /// `llama-cli` and `llama-server` read a prompt.
    pub fn prompt_tokens(&self, prompt: &Prompt) -> Result<Vec<u32>, EngineError> {
        self.prompt_tokens_special(prompt, true)
    }

    /// [`Engine::prompt_tokens`], where special-token text in a plain-text prompt is read as
    /// characters unless `parse_special`.
    pub fn prompt_tokens_special(&self, prompt: &Prompt, parse_special: bool) -> Result<Vec<u32>, EngineError> {
        Ok(match prompt {
            Prompt::Text(text) => self.tokenizer.encode(text, true, parse_special),
            Prompt::Chat(messages) => {
                let rendered = self.template.render(messages, true)?;
                self.tokenizer.encode(&rendered, true, true)
            }
            Prompt::Tokens(ids) => {
                let vocab = self.config.vocab_size;
                if let Some(&token) = ids.iter().find(|&&id| id as usize >= vocab) {
                    return Err(ModelError::TokenOutOfRange { token, vocab }.into());
                }
                ids.clone()
            }
        })
    }

    /// Generates a completion of `prompt`, passing each new piece of text to `on_delta` as it
    /// is known to be final (text that might begin a stop string is held back until it is
    /// not). `on_delta` returning `ControlFlow::Break` ends generation with
    /// [`FinishReason::Cancelled`].
    pub async fn generate(
        &mut self,
        prompt: &Prompt,
        params: &GenerateParams,
        mut on_delta: impl FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Completion, EngineError> {
        let mut generation = self.start(prompt, params).await?;
        while generation.finish.is_none() {
            let delta = self.step(&mut generation).await?;
            if !delta.is_empty() && on_delta(&delta).is_break() && generation.finish.is_none() {
                generation.cancel();
            }
        }
        Ok(generation.into_completion())
    }

    /// Starts a generation: tokenizes the prompt and runs it through the model. Each
    /// [`Engine::step`] then adds one token; a caller with an event loop (a Web Worker) can
    /// handle messages, such as a stop request, between steps. One generation at a time: the
    /// KV cache is the engine's, so starting another leaves the previous one unusable.
    pub async fn start(&mut self, prompt: &Prompt, params: &GenerateParams) -> Result<Generation, EngineError> {
        let grammar = params.grammar()?;
        let prompt_ids = self.prompt_tokens_special(&*params.prompt_with_tools(prompt)?, !params.no_special)?;
        if prompt_ids.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let context = self.context_size();
        if prompt_ids.len() >= context {
            return Err(EngineError::PromptTooLong { prompt: prompt_ids.len(), context });
        }
        let mut timings = Timings::default();
        let start = (self.clock)();
        let readback = readback_for(params);
        let next = self.prefill(&prompt_ids, readback, &mut timings).await?;
        timings.prefill_ms = (self.clock)() - start;
        let mut g = self.new_generation(params, prompt_ids, next, timings);
        g.matcher = grammar.map(JsonMatcher::new);
        Ok(g)
    }

    /// Samples the next token of `generation` and runs it through the model, returning the
    /// text that became final (often empty: part of a character, or text that may begin a stop
    /// string). Once the generation has finished, returns nothing more.
    pub async fn step(&mut self, generation: &mut Generation) -> Result<String, EngineError> {
        let g = generation;
        if g.finish.is_some() {
            return Ok(String::new());
        }
        let start = (self.clock)();
        if let Some(id) = self.pick(g) {
            let readback = readback_for(&g.params);
            g.next = match self.forward(&[id], g.history.len() - 1, Some(readback)).await {
                Err(e) if is_device_lost(&e) && self.on_gpu() => {
                    // Replay the conversation on the CPU and carry on there.
                    self.fall_back_to_cpu(e)?;
                    let mut replay = Timings::default();
                    self.prefill(&g.history, readback, &mut replay).await?
                }
                result => {
                    let next = result?.unwrap_or(Prediction::Logits(Vec::new()));
                    self.cached.push(id);
                    next
                }
            };
        }
        let delta = take_delta(g);
        g.timings.decode_ms += (self.clock)() - start;
        Ok(delta)
    }

    /// Samples `g`'s next token and decides whether the generation ends with it; returns the
    /// token when it must still run through the model.
    fn pick(&self, g: &mut Generation) -> Option<u32> {
        let id = match &mut g.next {
            Prediction::Token(id) => *id,
            Prediction::Logits(logits) => {
                if g.params.top_logits > 0 {
                    g.top_logits.push(top_n(logits, g.params.top_logits));
                }
                match &g.matcher {
                    None => g.sampler.sample(logits, &g.history),
                    Some(m) => {
                        // Sample freely; only if that token may not come next, mask every
                        // token that may not and sample again (llama.cpp does the same).
                        let id = g.sampler.sample(&mut logits.clone(), &g.history);
                        if self.allowed(m, id) {
                            id
                        } else {
                            self.mask(m, logits);
                            g.sampler.sample(logits, &g.history)
                        }
                    }
                }
            }
        };
        g.tokens.push(id);
        g.history.push(id);
        let eog = self.tokenizer.is_eog(id);
        if let Some(m) = &mut g.matcher {
            if !eog && !m.feed(&self.tokenizer.token_to_piece(id, false)) {
                // Every token was masked (the grammar is stuck): stop rather than emit junk.
                g.tokens.pop();
                g.history.pop();
                g.finish_with(FinishReason::Stop, false);
                return None;
            }
            if eog || m.is_finished() {
                if !eog {
                    g.text.push_str(&g.decoder.push(&self.tokenizer, id));
                }
                g.finish_with(FinishReason::Stop, false);
                return None;
            }
        }
        if (!g.params.ignore_eos && eog) || g.params.stop_tokens.contains(&id) {
            g.finish_with(FinishReason::Stop, false);
            return None;
        }
        g.text.push_str(&g.decoder.push(&self.tokenizer, id));
        if let Some(at) = find_stop(&g.text, &g.params.stop, g.sent) {
            g.text.truncate(at);
            g.finish_with(FinishReason::Stop, true);
            None
        } else if g.tokens.len() >= g.params.max_tokens || g.history.len() >= g.context {
            g.finish_with(FinishReason::Length, false);
            None
        } else {
            Some(id)
        }
    }

    /// Whether token `id` may come next under `m`: an end-of-generation token once the value
    /// is complete, another control token never.
    fn allowed(&self, m: &JsonMatcher, id: u32) -> bool {
        if self.tokenizer.is_eog(id) {
            return m.is_complete();
        }
        if self.tokenizer.is_control(id) {
            return false;
        }
        let piece = self.tokenizer.token_to_piece(id, false);
        !piece.is_empty() && m.accepts(&piece)
    }

    /// Sets the logits of tokens that may not come next under `m` to −∞.
    fn mask(&self, m: &JsonMatcher, logits: &mut [f32]) {
        // A token can only be allowed if its first byte is: 256 checks rule out most of the
        // vocabulary before any token is tried whole.
        let first: Vec<bool> = (0..=255u8).map(|b| m.accepts(&[b])).collect();
        for (id, logit) in logits.iter_mut().enumerate() {
            let id = id as u32;
            let ok = if self.tokenizer.is_eog(id) {
                m.is_complete()
            } else if self.tokenizer.is_control(id) {
                false
            } else {
                let piece = self.tokenizer.token_to_piece(id, false);
                piece.first().is_some_and(|&b| first[b as usize]) && (piece.len() == 1 || m.accepts(&piece))
            };
            if !ok {
                *logit = f32::NEG_INFINITY;
            }
        }
    }

    /// Completes several requests together (the LLM service's batches): on the CPU backend each
    /// has its own KV cache, the prompts' common prefix is computed once and copied, and every
    /// decode step runs the batch's unfinished sequences through one forward pass, so the
    /// weights are read once per step for all of them. A sequence's tokens are the same as
    /// [`Engine::generate`] gives it alone. On the GPU the requests run one after another.
    /// Errors of one request (an empty or too long prompt) are its own; a failing forward pass
    /// fails the batch.
    #[allow(clippy::type_complexity)]
    pub async fn generate_batch(
        &mut self,
        requests: &[(Prompt, GenerateParams)],
    ) -> Result<Vec<Result<Completion, EngineError>>, EngineError> {
        if self.on_gpu() || requests.len() < 2 {
            let mut out = Vec::with_capacity(requests.len());
            for (prompt, params) in requests {
                out.push(match self.generate(prompt, params, |_| ControlFlow::Continue(())).await {
                    Err(e @ EngineError::Model(_)) => return Err(e),
                    other => other,
                });
            }
            return Ok(out);
        }
        let mut results: Vec<Option<Result<Completion, EngineError>>> = requests.iter().map(|_| None).collect();
        // (request, prompt tokens) of the requests that can start.
        let mut ready = Vec::new();
        for (i, (prompt, params)) in requests.iter().enumerate() {
            let prepared = params.grammar().and_then(|g| Ok((g, params.prompt_with_tools(prompt)?)));
            let (grammar, prompt) = match prepared {
                Ok(prepared) => prepared,
                Err(e) => {
                    results[i] = Some(Err(e));
                    continue;
                }
            };
            match self.prompt_tokens_special(&prompt, !params.no_special) {
                Ok(ids) if ids.is_empty() => results[i] = Some(Err(EngineError::EmptyPrompt)),
                Ok(ids) if ids.len() >= self.context_size() => {
                    results[i] =
                        Some(Err(EngineError::PromptTooLong { prompt: ids.len(), context: self.context_size() }))
                }
                Ok(ids) if params.max_tokens == 0 => {
                    let g = self.new_generation(params, ids, Prediction::Logits(Vec::new()), Timings::default());
                    results[i] = Some(Ok(g.into_completion()));
                }
                Ok(ids) => ready.push((i, ids, grammar)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        if !ready.is_empty() {
            for (i, completion) in self.decode_batch(requests, ready)? {
                results[i] = Some(Ok(completion));
            }
        }
        Ok(results.into_iter().map(|r| r.unwrap_or(Err(EngineError::EmptyPrompt))).collect())
    }

    fn new_generation(
        &self,
        params: &GenerateParams,
        prompt: Vec<u32>,
        next: Prediction,
        timings: Timings,
    ) -> Generation {
        Generation {
            sampler: Sampler::new(params.sampler.clone()),
            params: params.clone(),
            prompt_tokens: prompt.len(),
            history: prompt,
            next,
            decoder: StreamDecoder::new(),
            text: String::new(),
            sent: 0,
            tokens: Vec::new(),
            top_logits: Vec::new(),
            finish: (params.max_tokens == 0).then_some(FinishReason::Length),
            timings,
            context: self.context_size(),
            matcher: None,
        }
    }

    /// The CPU half of [`Engine::generate_batch`] for requests whose prompts are tokenized.
    fn decode_batch(
        &self,
        requests: &[(Prompt, GenerateParams)],
        ready: Vec<(usize, Vec<u32>, Option<Grammar>)>,
    ) -> Result<Vec<(usize, Completion)>, EngineError> {
        let Weights::Cpu(model) = &self.weights else { unreachable!("generate_batch decodes on the CPU only") };
        let fail = EngineError::from;
        let start = (self.clock)();
        // The common prefix (less each prompt's last token, which must run for its logits).
        let shortest = ready.iter().map(|(_, ids, _)| ids.len() - 1).min().unwrap_or(0);
        let first = &ready[0].1;
        let prefix = (0..shortest).take_while(|&p| ready.iter().all(|(_, ids, _)| ids[p] == first[p])).count();
        let mut shared = model.new_cache(prefix.max(1));
        for (c, chunk) in first[..prefix].chunks(PREFILL_CHUNK).enumerate() {
            let mut seq = [Sequence { cache: &mut shared, tokens: chunk, pos: c * PREFILL_CHUNK }];
            model.forward_batch(&mut seq, false).map_err(fail)?;
        }
        let mut caches = Vec::with_capacity(ready.len());
        let mut gens = Vec::with_capacity(ready.len());
        for (i, ids, grammar) in &ready {
            let params = &requests[*i].1;
            let mut cache = model.new_cache(ids.len() + params.max_tokens);
            model.copy_prefix(&shared, &mut cache, prefix).map_err(fail)?;
            let mut logits = Vec::new();
            for (c, chunk) in ids[prefix..].chunks(PREFILL_CHUNK).enumerate() {
                let mut seq = [Sequence { cache: &mut cache, tokens: chunk, pos: prefix + c * PREFILL_CHUNK }];
                logits = model.forward_batch(&mut seq, false).map_err(fail)?.remove(0);
            }
            let timings = Timings { prefill_tokens: ids.len() - prefix, ..Timings::default() };
            let mut g = self.new_generation(params, ids.clone(), Prediction::Logits(logits), timings);
            g.matcher = grammar.clone().map(JsonMatcher::new);
            gens.push(g);
            caches.push(cache);
        }
        let prefill_ms = (self.clock)() - start;
        gens.iter_mut().for_each(|g| g.timings.prefill_ms = prefill_ms);
        // Decode: every unfinished sequence advances by one token per forward pass.
        loop {
            let step_start = (self.clock)();
            let mut picked = Vec::new();
            for (j, g) in gens.iter_mut().enumerate() {
                if g.finish.is_none()
                    && let Some(id) = self.pick(g)
                {
                    picked.push((j, [id]));
                }
            }
            if picked.is_empty() {
                break;
            }
            let mut seqs: Vec<Sequence> = caches
                .iter_mut()
                .enumerate()
                .filter_map(|(j, cache)| {
                    let (_, id) = picked.iter().find(|(p, _)| *p == j)?;
                    Some(Sequence { cache, tokens: id, pos: gens[j].history.len() - 1 })
                })
                .collect();
            let logits = model.forward_batch(&mut seqs, false).map_err(fail)?;
            for ((j, _), l) in picked.iter().zip(logits) {
                gens[*j].next = Prediction::Logits(l);
            }
            let ms = (self.clock)() - step_start;
            gens.iter_mut().for_each(|g| g.timings.decode_ms += ms);
        }
        Ok(ready
            .iter()
            .zip(gens)
            .map(|((i, _, _), mut g)| {
                take_delta(&mut g);
                (*i, g.into_completion())
            })
            .collect())
    }

    /// Runs the prompt's tokens that are not already in the KV cache, in chunks, and returns
    /// the prediction after its last token. A GPU lost on the way moves to the CPU.
    async fn prefill(
        &mut self,
        prompt: &[u32],
        readback: Readback,
        timings: &mut Timings,
    ) -> Result<Prediction, EngineError> {
        match self.prefill_on_backend(prompt, readback, timings).await {
            Err(e) if is_device_lost(&e) && self.on_gpu() => {
                self.fall_back_to_cpu(e)?;
                self.prefill_on_backend(prompt, readback, timings).await
            }
            result => result,
        }
    }

    async fn prefill_on_backend(
        &mut self,
        prompt: &[u32],
        readback: Readback,
        timings: &mut Timings,
    ) -> Result<Prediction, EngineError> {
        let mut reuse = self.cached.iter().zip(prompt).take_while(|(a, b)| a == b).count();
        // The last prompt token always runs: its prediction is the first token.
        reuse = reuse.min(prompt.len() - 1);
        self.cached.truncate(reuse);
        let mut next = None;
        let chunks: Vec<&[u32]> = prompt[reuse..].chunks(PREFILL_CHUNK).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let pos = self.cached.len();
            // Only the last chunk's prediction is needed.
            let wanted = (i + 1 == chunks.len()).then_some(readback);
            next = self.forward(chunk, pos, wanted).await.inspect_err(|_| self.cached.truncate(pos))?;
            self.cached.extend_from_slice(chunk);
        }
        timings.prefill_tokens = prompt.len() - reuse;
        Ok(next.unwrap_or(Prediction::Logits(Vec::new())))
    }

    /// One forward pass on the current backend; the prediction for the next token if
    /// `readback` asks for one.
    async fn forward(
        &mut self,
        tokens: &[u32],
        pos: usize,
        readback: Option<Readback>,
    ) -> Result<Option<Prediction>, EngineError> {
        Ok(match &mut self.weights {
            Weights::Gpu { model, .. } => model.forward(tokens, pos, readback).await?,
            Weights::Cpu(model) => Some(Prediction::Logits(model.forward(tokens, pos, false)?)),
        })
    }

    /// Drops the GPU model after `error` (its device is gone) and loads the weights onto the
    /// CPU from the model's source; the CPU's KV cache is empty, so the next prefill runs the
    /// whole conversation.
    fn fall_back_to_cpu(&mut self, error: EngineError) -> Result<(), EngineError> {
        let Weights::Gpu { source, .. } = &self.weights else { return Ok(()) };
        let reload = |source: &dyn ByteSource| -> Result<Transformer, EngineError> {
            Ok(Transformer::load(&Gguf::read(source)?, source, self.n_ctx)?)
        };
        let model = reload(source.as_ref())
            .map_err(|reload| EngineError::FallbackFailed { lost: error.to_string(), reload: Box::new(reload) })?;
        self.weights = Weights::Cpu(Box::new(model));
        self.cached.clear();
        self.backend_note = Some(format!("moved to the CPU: {error}"));
        Ok(())
    }
}

/// What a forward pass must return for `params`: the argmax alone when that decides the next
/// token (the GPU then reads back 8 bytes, not the logits).
/// The text of `g` that became final since it was last asked.
fn take_delta(g: &mut Generation) -> String {
    let end = if g.finish.is_some() { g.text.len() } else { safe_prefix(&g.text, &g.params.stop).max(g.sent) };
    let delta = g.text[g.sent..end].to_owned();
    g.sent = end;
    delta
}

fn readback_for(params: &GenerateParams) -> Readback {
    let free = params.response_format == ResponseFormat::Text;
    if params.sampler.is_greedy() && params.top_logits == 0 && free { Readback::Argmax } else { Readback::Logits }
}

fn is_device_lost(e: &EngineError) -> bool {
    matches!(e, EngineError::Model(ModelError::Kernel(KernelError::DeviceLost(_))))
}

/// The `n` largest logits with their token ids, largest first (ties: lower id first).
fn top_n(logits: &[f32], n: usize) -> Vec<(u32, f32)> {
    let mut all: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
    let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let n = n.min(all.len());
    if n < all.len() {
        all.select_nth_unstable_by(n, by_logit);
        all.truncate(n);
    }
    all.sort_by(by_logit);
    all
}

/// Byte offset of the first stop string in `text` that ends after `sent` bytes (earlier text
/// was already checked), if any.
fn find_stop(text: &str, stops: &[String], sent: usize) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            // A match ending after `sent` starts at most len(s) - 1 bytes before it.
            let mut from = sent.saturating_sub(s.len().saturating_sub(1));
            while !text.is_char_boundary(from) {
                from -= 1;
            }
            text[from..].find(s.as_str()).map(|i| from + i)
        })
        .min()
}

/// The length of the longest prefix of `text` that no continuation can turn into a stop
/// string: everything before a suffix of `text` that is a proper prefix of some stop string.
fn safe_prefix(text: &str, stops: &[String]) -> usize {
    let mut safe = text.len();
    for stop in stops {
        for (i, _) in stop.char_indices().skip(1) {
            if text.ends_with(&stop[..i]) {
                safe = safe.min(text.len() - i);
            }
        }
    }
    safe
}

/// Milliseconds since the first call, from `std::time::Instant`, for native callers.
#[cfg(not(target_arch = "wasm32"))]
pub fn native_clock() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stops(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn text_that_may_begin_a_stop_string_is_held_back() {
        let s = stops(&["\nUser:", "END"]);
        assert_eq!(safe_prefix("hello\nUs", &s), "hello".len());
        assert_eq!(safe_prefix("hello E", &s), "hello ".len());
        assert_eq!(safe_prefix("hello", &s), "hello".len());
        assert_eq!(safe_prefix("héllo", &stops(&["é!"])), "héllo".len());
        assert_eq!(safe_prefix("hé", &stops(&["é!"])), "h".len());
    }

    #[test]
    fn stop_strings_are_found_across_deltas_and_only_once() {
        let s = stops(&["END", "\n\n"]);
        assert_eq!(find_stop("abcEN", &s, 3), None);
        assert_eq!(find_stop("abcEND", &s, 3), Some(3));
        assert_eq!(find_stop("a\n\nbEND", &s, 1), Some(1));
        assert_eq!(find_stop("ab", &stops(&[""]), 0), None);
        assert_eq!(find_stop("ééEND", &s, 3), Some(4));
    }
}
