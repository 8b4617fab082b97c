//! The default model on the GPU backend natively, through wgpu on Vulkan (Mesa's lavapipe
//! where there is no GPU), against llama.cpp's greedy goldens (tests/golden/) — tokens and
//! top logits within `GPU_LOGIT_TOLERANCE` (see `check_gpu_greedy` for what is asserted and
//! why the tolerance) — plus the CPU fallback when the device is lost.

use std::ops::ControlFlow;
use std::rc::Rc;

use hearth_core::catalog::{DEFAULT_MODEL, models_dir};
use hearth_core::chat_template::ChatMessage;
use hearth_core::engine::{Backend, BackendChoice, Engine, EngineError, GenerateParams, Prompt, native_clock};
use hearth_core::kernels::gpu::GpuContext;
use hearth_tests::check_gpu_greedy;
use serde_json::Value;

fn golden() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/golden/smollm2-135m-q4_1/greedy.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("golden file")).expect("golden JSON")
}

fn gpu() -> Rc<GpuContext> {
    Rc::new(pollster::block_on(GpuContext::new()).expect("a Vulkan adapter (install mesa-vulkan-drivers for lavapipe)"))
}

fn engine(n_ctx: usize, choice: BackendChoice, gpu: Result<Rc<GpuContext>, String>) -> Engine {
    let path = models_dir().join(DEFAULT_MODEL.file);
    let file =
        std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e} (run scripts/fetch-model.sh)", path.display()));
    Engine::load_on(&file, n_ctx, native_clock, choice, gpu).unwrap()
}

fn prompt_of(case: &Value) -> Prompt {
    let text = case["prompt"].as_str().unwrap().to_owned();
    if case["chat"] == Value::Bool(true) {
        Prompt::Chat(vec![ChatMessage::new("user", text)])
    } else {
        Prompt::Text(text)
    }
}

fn greedy(max_tokens: usize, top_logits: usize) -> GenerateParams {
    GenerateParams { max_tokens, ignore_eos: true, top_logits, ..GenerateParams::default() }
}

fn run(engine: &mut Engine, prompt: &Prompt, params: &GenerateParams) -> hearth_core::engine::Completion {
    pollster::block_on(engine.generate(prompt, params, |_| ControlFlow::Continue(()))).unwrap()
}

#[test]
fn greedy_generation_on_the_gpu_follows_llama_cpp() {
    let golden = golden();
    let top = golden["top"].as_u64().unwrap() as usize;
    let mut gpu = engine(512, BackendChoice::Gpu, Ok(gpu()));
    assert_eq!(gpu.backend(), Backend::Gpu);
    let (mut worst, mut steps, mut total) = (0.0f64, 0, 0);
    let cases = golden["cases"].as_array().unwrap();
    // Three of the five cases (two text, one chat) keep lavapipe's time in bounds.
    for case in [&cases[0], &cases[1], &cases[3]] {
        let prompt = prompt_of(case);
        let n = case["ids"].as_array().unwrap().len();
        // Greedy without logits: the GPU picks each token itself and reads back 8 bytes.
        let fast = run(&mut gpu, &prompt, &greedy(n, 0));
        let got = run(&mut gpu, &prompt, &greedy(n, top));
        assert_eq!(fast.tokens, got.tokens, "argmax on the GPU = argmax of the logits read back");
        let tokens: Vec<u64> = got.tokens.iter().map(|&t| u64::from(t)).collect();
        let top_logits: Vec<Vec<(u64, f64)>> = got
            .top_logits
            .iter()
            .map(|step| step.iter().map(|&(t, l)| (u64::from(t), f64::from(l))).collect())
            .collect();
        let (w, s) = check_gpu_greedy(case, &tokens, &top_logits);
        worst = worst.max(w);
        steps += s;
        total += n;
    }
    eprintln!("GPU (natively): {steps} of {total} golden steps compared, largest |logit - llama.cpp| {worst}");
}

#[test]
fn a_lost_device_moves_the_conversation_to_the_cpu() {
    let case = &golden()["cases"][1];
    let prompt = prompt_of(case);
    let params = greedy(24, 0);
    let ctx = gpu();
    let mut engine = engine(256, BackendChoice::Gpu, Ok(Rc::clone(&ctx)));
    let mut generation = pollster::block_on(engine.start(&prompt, &params)).unwrap();
    let mut text = String::new();
    for _ in 0..8 {
        text += &pollster::block_on(engine.step(&mut generation)).unwrap();
    }
    assert_eq!(engine.backend(), Backend::Gpu);
    ctx.destroy();
    while generation.finish_reason().is_none() {
        text += &pollster::block_on(engine.step(&mut generation)).unwrap();
    }
    assert_eq!(engine.backend(), Backend::Cpu, "the engine moved to the CPU");
    let note = engine.backend_note().unwrap_or_default();
    assert!(note.contains("lost"), "the note says why: {note}");
    let done = generation.into_completion();
    assert_eq!(done.tokens.len(), 24, "the reply goes on to its length");
    assert_eq!(text, done.text, "every token's text was streamed");

    // The GPU predicted the first 9 tokens (the 9th before the loss); the CPU replayed the
    // conversation and went on from there, exactly as a CPU engine given those tokens does.
    let mut cpu = self::engine(256, BackendChoice::Cpu, Err("not needed".into()));
    let mut history = cpu.prompt_tokens(&prompt).unwrap();
    history.extend(&done.tokens[..9]);
    let rest = run(&mut cpu, &Prompt::Tokens(history), &greedy(15, 0));
    assert_eq!(done.tokens[9..], rest.tokens[..], "after the loss the reply is the CPU's");
    // The next turn runs on the CPU too.
    let again = run(&mut engine, &prompt, &params);
    assert_eq!(again.tokens[..9], done.tokens[..9], "the CPU agrees with the GPU's start here");
}

#[test]
fn backend_choice_without_a_gpu() {
    let path = models_dir().join(DEFAULT_MODEL.file);
    let file = std::fs::File::open(&path).unwrap();
    let forced = Engine::load_on(&file, 64, native_clock, BackendChoice::Gpu, Err("no adapter here".into()));
    match forced {
        Err(EngineError::NoGpu(why)) => assert!(why.contains("no adapter here")),
        Err(e) => panic!("expected NoGpu, got {e}"),
        Ok(_) => panic!("expected NoGpu, got an engine"),
    }
    let auto = Engine::load_on(&file, 64, native_clock, BackendChoice::Auto, Err("no adapter here".into())).unwrap();
    assert_eq!(auto.backend(), Backend::Cpu);
    assert!(auto.backend_note().unwrap_or_default().contains("no adapter here"));
}
