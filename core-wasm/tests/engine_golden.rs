//! The generation API on the default model: greedy completions identical to llama.cpp's
//! (tests/golden/, made by scripts/make-goldens.sh) for text and chat prompts, streamed deltas
//! that add up to the completion, stop strings, limits, cancellation, seeded sampling and KV
//! cache reuse across chat turns.

use std::ops::ControlFlow;

use hearth_api::catalog::{DEFAULT_MODEL, models_dir};
use hearth_core::chat_template::ChatMessage;
use hearth_core::engine::{Completion, Engine, EngineError, FinishReason, GenerateParams, Prompt, native_clock};
use hearth_core::gguf::SharedBytes;
use hearth_core::sampler::SamplerConfig;
use serde_json::Value;

fn golden() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/golden/smollm2-135m-q4_1/greedy.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("golden file")).expect("golden JSON")
}

fn engine(n_ctx: usize) -> Engine {
    let path = models_dir().join(DEFAULT_MODEL.file);
    let file = hearth_core::mapped_file::MappedFile::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/fetch-model.sh)", path.display()));
    Engine::load(&file, n_ctx, native_clock).unwrap()
}

/// [`Engine::generate`], waited for (on the CPU nothing ever waits).
fn generate(
    engine: &mut Engine,
    prompt: &Prompt,
    params: &GenerateParams,
    on_delta: impl FnMut(&str) -> ControlFlow<()>,
) -> Result<Completion, EngineError> {
    pollster::block_on(engine.generate(prompt, params, on_delta))
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn prompt_of(case: &Value) -> Prompt {
    let text = case["prompt"].as_str().unwrap().to_owned();
    if case["chat"] == Value::Bool(true) {
        Prompt::Chat(vec![ChatMessage::new("user", text)])
    } else {
        Prompt::Text(text)
    }
}

fn greedy(max_tokens: usize) -> GenerateParams {
    GenerateParams { max_tokens, ignore_eos: true, ..GenerateParams::default() }
}

#[test]
fn greedy_completions_are_llama_cpp_s() {
    let mut engine = engine(512);
    for case in golden()["cases"].as_array().unwrap() {
        let prompt = prompt_of(case);
        let expected = ids(&case["ids"]);
        assert_eq!(engine.prompt_tokens(&prompt).unwrap(), ids(&case["prompt_ids"]), "prompt of {prompt:?}");
        let mut streamed = String::new();
        let done = generate(&mut engine, &prompt, &greedy(expected.len()), |delta| {
            streamed.push_str(delta);
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(done.tokens, expected, "tokens of {prompt:?}");
        assert_eq!(done.text, case["text"].as_str().unwrap(), "text of {prompt:?}");
        assert_eq!(streamed, done.text, "the deltas add up to the completion");
        assert_eq!(done.finish_reason, FinishReason::Length);
        assert_eq!(
            (done.prompt_tokens, done.completion_tokens),
            (case["prompt_ids"].as_array().unwrap().len(), expected.len())
        );
    }
}

#[test]
fn a_model_in_memory_generates_the_same() {
    // As in the browser: the file fetched into one buffer, the weights left in it.
    let bytes = std::fs::read(models_dir().join(DEFAULT_MODEL.file)).expect("the default model");
    let mut engine = Engine::load(&SharedBytes::new(bytes), 256, native_clock).unwrap();
    let case = &golden()["cases"][0];
    let expected = ids(&case["ids"]);
    let done = generate(&mut engine, &prompt_of(case), &greedy(expected.len()), |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(done.tokens, expected);
}

/// The model file is read whole at load: overwriting it with garbage, truncating it and
/// deleting it afterwards change nothing about what the loaded engine generates.
#[test]
fn the_model_file_changing_or_vanishing_after_load_changes_nothing() {
    let dir = std::env::temp_dir().join(format!("hearth-vanishing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.gguf");
    std::fs::copy(models_dir().join(DEFAULT_MODEL.file), &path).expect("the default model");
    let mut engine =
        Engine::load(&hearth_core::mapped_file::MappedFile::open(&path).unwrap(), 256, native_clock).unwrap();
    let case = &golden()["cases"][0];
    let expected = ids(&case["ids"]);
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    for change in ["overwritten", "truncated", "deleted"] {
        match change {
            "overwritten" => std::fs::write(&path, vec![0xA5u8; len]).unwrap(),
            "truncated" => std::fs::File::options().write(true).open(&path).unwrap().set_len(100).unwrap(),
            _ => std::fs::remove_file(&path).unwrap(),
        }
        let done =
            generate(&mut engine, &prompt_of(case), &greedy(expected.len()), |_| ControlFlow::Continue(())).unwrap();
        assert_eq!(done.tokens, expected, "after the file was {change}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn stop_strings_end_the_completion_before_them() {
    let case = &golden()["cases"][0];
    let full = case["text"].as_str().unwrap();
    // A stop string from the middle of the known completion, spanning several tokens.
    let cut = full.char_indices().nth(full.chars().count() / 2).unwrap().0;
    let stop: String = full[cut..].chars().take(6).collect();
    let first = full.find(&stop).unwrap();
    let mut engine = engine(512);
    let mut streamed = String::new();
    let params = GenerateParams { stop: vec!["never appears ∅".into(), stop.clone()], ..greedy(40) };
    let done = generate(&mut engine, &prompt_of(case), &params, |delta| {
        streamed.push_str(delta);
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(done.finish_reason, FinishReason::Stop);
    assert_eq!(done.text, full[..first], "stop string {stop:?}");
    assert_eq!(streamed, done.text, "no part of the stop string was streamed");
}

#[test]
fn end_of_generation_tokens_stop_a_chat_reply() {
    let mut engine = engine(512);
    let prompt = Prompt::Chat(vec![ChatMessage::new("user", "Say hello.")]);
    let done = generate(&mut engine, &prompt, &GenerateParams { max_tokens: 200, ..Default::default() }, |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(done.finish_reason, FinishReason::Stop, "reply {:?}", done.text);
    let last = *done.tokens.last().unwrap();
    assert!(engine.tokenizer().is_eog(last), "ends with {last}");
    assert!(!done.text.contains("<|im_end|>"), "control tokens are not text: {:?}", done.text);
    assert!(!done.text.is_empty());
}

#[test]
fn the_callback_can_cancel() {
    let mut engine = engine(512);
    let mut deltas = 0;
    let done = generate(&mut engine, &Prompt::Text("Once upon a time".into()), &greedy(40), |delta| {
        deltas += usize::from(!delta.is_empty());
        if deltas == 3 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    })
    .unwrap();
    assert_eq!(done.finish_reason, FinishReason::Cancelled);
    assert!(done.completion_tokens < 40);
    assert_eq!(deltas, 3);
}

#[test]
fn the_same_seed_gives_the_same_completion() {
    let mut engine = engine(512);
    let prompt = Prompt::Text("My favourite food is".into());
    let params = |seed| GenerateParams {
        max_tokens: 24,
        sampler: SamplerConfig { temperature: 0.9, top_k: 40, top_p: 0.95, seed, ..Default::default() },
        ..Default::default()
    };
    let run =
        |engine: &mut Engine, seed| generate(engine, &prompt, &params(seed), |_| ControlFlow::Continue(())).unwrap();
    let a = run(&mut engine, 7);
    let b = run(&mut engine, 7);
    assert_eq!((&a.tokens, &a.text), (&b.tokens, &b.text));
    let others: Vec<_> = (8..12).map(|seed| run(&mut engine, seed).tokens).collect();
    assert!(others.iter().any(|t| *t != a.tokens), "different seeds give different samples");
}

#[test]
fn a_chat_turn_reuses_the_previous_turns_kv_cache() {
    let mut warm = engine(1024);
    let first = vec![ChatMessage::new("user", "Name a colour.")];
    let one = generate(
        &mut warm,
        &Prompt::Chat(first.clone()),
        &GenerateParams { max_tokens: 16, ..Default::default() },
        |_| ControlFlow::Continue(()),
    )
    .unwrap();
    let mut second = first;
    second.push(ChatMessage::new("assistant", one.text.clone()));
    second.push(ChatMessage::new("user", "And another one?"));
    let params = GenerateParams { max_tokens: 16, ..Default::default() };
    let reused = generate(&mut warm, &Prompt::Chat(second.clone()), &params, |_| ControlFlow::Continue(())).unwrap();
    assert!(
        reused.timings.prefill_tokens < reused.prompt_tokens / 2,
        "only the new turn runs: {} of {} prompt tokens",
        reused.timings.prefill_tokens,
        reused.prompt_tokens
    );
    let fresh = generate(&mut engine(1024), &Prompt::Chat(second), &params, |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(fresh.timings.prefill_tokens, fresh.prompt_tokens);
    assert_eq!(reused.tokens, fresh.tokens, "reusing the cache changes nothing");
}

#[test]
fn limits_and_bad_prompts_are_reported() {
    let mut engine = engine(32);
    let done = generate(&mut engine, &Prompt::Text("One two three".into()), &greedy(5), |_| ControlFlow::Continue(()))
        .unwrap();
    assert_eq!((done.finish_reason, done.completion_tokens), (FinishReason::Length, 5));
    // The context ends before max_tokens.
    let done =
        generate(&mut engine, &Prompt::Text("One two three".into()), &greedy(100), |_| ControlFlow::Continue(()))
            .unwrap();
    assert_eq!(done.finish_reason, FinishReason::Length);
    assert_eq!(done.prompt_tokens + done.completion_tokens, 32);
    let long = Prompt::Text("word ".repeat(100));
    match generate(&mut engine, &long, &greedy(5), |_| ControlFlow::Continue(())) {
        Err(e @ EngineError::PromptTooLong { context: 32, .. }) => assert!(e.to_string().contains("32")),
        other => panic!("expected PromptTooLong, got {other:?}"),
    }
    assert!(matches!(
        generate(&mut engine, &Prompt::Text(String::new()), &greedy(5), |_| ControlFlow::Continue(())),
        Err(EngineError::EmptyPrompt)
    ));
}

#[test]
fn a_batch_gives_each_request_what_it_gets_alone() {
    let mut engine = engine(1024);
    let chat = |system: &str, user: &str| {
        Prompt::Chat(vec![ChatMessage::new("system", system), ChatMessage::new("user", user)])
    };
    let sampled = |seed, max_tokens| GenerateParams {
        max_tokens,
        sampler: SamplerConfig { temperature: 0.8, top_k: 40, seed, ..SamplerConfig::default() },
        ..GenerateParams::default()
    };
    let requests = vec![
        // Two share the system prompt (a common prefix computed once), one does not; they end
        // at different steps, so the batch shrinks as it goes.
        (chat("You are a poet.", "Write about the sea."), sampled(1, 24)),
        (chat("You are a poet.", "Write about the hills."), sampled(2, 9)),
        (Prompt::Text("The capital of France is".into()), greedy(16)),
        (Prompt::Text(String::new()), greedy(4)),
        (chat("You are terse.", "Say hi."), GenerateParams { max_tokens: 0, ..greedy(0) }),
    ];
    let poets = pollster::block_on(engine.generate_batch(&requests[..2])).unwrap();
    let batch = pollster::block_on(engine.generate_batch(&requests)).unwrap();
    assert_eq!(batch.len(), requests.len());
    // The two poets alone share a longer prefix than the whole batch does: the same replies.
    for (i, poet) in poets.into_iter().enumerate() {
        assert_eq!(poet.unwrap().tokens, batch[i].as_ref().unwrap().tokens, "poet {i}");
    }
    for (i, ((prompt, params), got)) in requests.iter().zip(batch).enumerate() {
        match (generate(&mut engine, prompt, params, |_| ControlFlow::Continue(())), got) {
            (Ok(alone), Ok(batched)) => {
                assert_eq!(batched.tokens, alone.tokens, "request {i}: tokens");
                assert_eq!(batched.text, alone.text, "request {i}: text");
                assert_eq!(batched.finish_reason, alone.finish_reason, "request {i}");
                assert_eq!(batched.prompt_tokens, alone.prompt_tokens, "request {i}");
            }
            (Err(alone), Err(batched)) => assert_eq!(batched.to_string(), alone.to_string(), "request {i}"),
            (alone, batched) => panic!("request {i}: alone {alone:?}, batched {batched:?}"),
        }
    }
}

/// A plain-text prompt reads special-token text as llama.cpp's `llama-cli` and
/// `llama-server` do: the chat case's rendered ChatML text, sent as text, is llama.cpp's
/// tokens and gets the chat's reply; `no_special` keeps the same text as characters.
#[test]
fn special_token_text_in_a_plain_prompt_is_read_as_llama_cpp_reads_it() {
    let mut engine = engine(512);
    let case = golden()["cases"].as_array().unwrap().iter().find(|c| c["chat"] == Value::Bool(true)).unwrap().clone();
    let text = Prompt::Text(case["rendered"].as_str().unwrap().to_owned());
    assert!(case["rendered"].as_str().unwrap().starts_with("<|im_start|>"));
    assert_eq!(engine.prompt_tokens(&text).unwrap(), ids(&case["prompt_ids"]));
    let expected = ids(&case["ids"]);
    let done = generate(&mut engine, &text, &greedy(expected.len()), |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(done.tokens, expected, "the chat's reply");
    let as_characters = GenerateParams { no_special: true, ..greedy(1) };
    let done = generate(&mut engine, &text, &as_characters, |_| ControlFlow::Continue(())).unwrap();
    let literal = engine.prompt_tokens_special(&text, false).unwrap();
    assert_eq!(done.prompt_tokens, literal.len());
    let im_start = engine.tokenizer().encode("<|im_start|>", false, true);
    assert_eq!(im_start.len(), 1, "one special token");
    assert!(!literal.contains(&im_start[0]), "no special token read from the text: {literal:?}");
    assert!(literal.len() > ids(&case["prompt_ids"]).len());
}
