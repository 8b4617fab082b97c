//! `--engine chromium|servo`: the app's page in a web engine, driven by `hearth` itself.
//! `hearth probe` reports what the page has; `hearth generate` in the page gives the same
//! greedy text as the native engine on the same backend. The Servo test uses the binary that
//! scripts/build-servo.sh builds (its first build is long).

use std::path::PathBuf;
use std::process::Command;

use hearth_api::catalog::{DEFAULT_MODEL, models_dir};
use hearth_tests::{hearth_binary, servo_binary};
use serde_json::Value;

fn json_of(bin: &PathBuf, args: &[&str]) -> Value {
    json_of_with(bin, args, &[])
}

/// [`json_of`] with environment variables set.
fn json_of_with(bin: &PathBuf, args: &[&str], env: &[(&str, &str)]) -> Value {
    let out = Command::new(bin).args(args).envs(env.iter().copied()).output().expect("run hearth");
    assert!(out.status.success(), "hearth {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON in {stdout:?}"));
    serde_json::from_str(last).expect("a JSON object")
}

/// The greedy completion of a fixed prompt: (text, backend).
fn completion(bin: &PathBuf, engine: &str, backend: &str) -> (String, String) {
    completion_with(bin, engine, backend, &[], &[])
}

/// [`completion`] with more arguments, and environment variables set.
fn completion_with(
    bin: &PathBuf,
    engine: &str,
    backend: &str,
    more: &[&str],
    env: &[(&str, &str)],
) -> (String, String) {
    let args = ["generate", "--engine", engine, "--backend", backend, "--json", "--max-tokens", "8"];
    let done = json_of_with(bin, &[&args[..], more, &["--prompt", "The capital of France is"]].concat(), env);
    (done["text"].as_str().expect("text").to_string(), done["backend"].as_str().unwrap_or_default().to_string())
}

#[test]
fn chromium_reports_isolation_threads_and_webgpu() {
    let report = json_of(&hearth_binary(), &["probe", "--engine", "chromium", "--backend", "cpu"]);
    println!("{report}");
    assert_eq!(report["crossOriginIsolated"], true, "{report}");
    assert_eq!(report["runtimeBuild"], "threaded", "{report}");
    assert!(report["threads"].as_u64().is_some_and(|t| t >= 1), "{report}");
    assert!(report["adapter"].is_object(), "a WebGPU adapter (SwiftShader): {report}");
    assert_eq!(report["backend"], "cpu");
}

/// A copy of the default model outside the models folder, under a name a URL must escape:
/// what `--model FILE` hands the page (the launcher serves it for the session).
fn model_elsewhere() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("my model (copy).gguf");
    std::fs::copy(models_dir().join(DEFAULT_MODEL.file), &copy).unwrap();
    let copy = copy.to_str().unwrap().to_owned();
    (dir, copy)
}

#[test]
fn generating_in_chromium_gives_the_native_text() {
    let bin = hearth_binary();
    let (native, _) = completion(&bin, "native", "cpu");
    let (page, backend) = completion(&bin, "chromium", "cpu");
    assert_eq!(backend, "cpu");
    assert_eq!(page, native, "the page's greedy text against the native engine's");
    let (_dir, model) = model_elsewhere();
    let (page, _) = completion_with(&bin, "chromium", "cpu", &["--model", &model, "--ctx", "256"], &[]);
    assert_eq!(page, native, "the page's greedy text on --model {model}");
}

/// scripts/test.sh builds the Servo binary first (from the persistent cache: minutes).
#[test]
fn servo_runs_the_app_and_generates_on_webgpu() {
    let servo = servo_binary();
    let report = json_of(&servo, &["probe", "--engine", "servo", "--backend", "gpu"]);
    println!("servo: {report}");
    assert_eq!(report["webgpu"], true, "{report}");
    assert!(report["adapter"].is_object(), "a WebGPU adapter (lavapipe): {report}");
    assert_eq!(report["backend"], "gpu", "the model on WebGPU: {report}");

    let (page, backend) = completion(&servo, "servo", "gpu");
    assert_eq!(backend, "gpu");
    // wgpu natively and Servo's WebGPU run the same WGSL on the same lavapipe device: natively
    // with f16 weights only if Servo's adapter offers shader-f16 too (lavapipe has it; Servo's
    // WebGPU does not pass it on).
    let shader_f16 = report["adapter"]["shaderF16"].as_bool().expect("the probe says whether there is shader-f16");
    let env: &[(&str, &str)] = if shader_f16 { &[] } else { &[("HEARTH_SHADER_F16", "off")] };
    let (native, _) = completion_with(&hearth_binary(), "native", "gpu", &[], env);
    println!("servo: {page:?}, native GPU: {native:?}");
    assert_eq!(page, native, "Servo's greedy text on WebGPU against native wgpu's");

    // Any file, with --model: the launcher serves it to Servo's page for the session.
    let (_dir, model) = model_elsewhere();
    let (page, backend) = completion_with(&servo, "servo", "cpu", &["--model", &model], &[]);
    let (native, _) = completion(&hearth_binary(), "native", "cpu");
    assert_eq!(backend, "cpu");
    assert_eq!(page, native, "Servo's greedy text on --model {model} against the native CPU's");
}

/// With Hearth's patches Servo posts shared memory to workers: the threaded build runs there,
/// and a workflow's agents run in Web Workers over the shared-memory bus, as in Chromium; the
/// single-threaded build runs them over the message-passing bus.
#[test]
fn servo_runs_a_workflow_on_the_threaded_build_the_same_twice() {
    let servo = servo_binary();
    let report = json_of(&servo, &["probe", "--engine", "servo", "--backend", "cpu"]);
    println!("servo: {report}");
    assert_eq!(report["runtimeBuild"], "threaded", "{report}");
    assert!(report["threads"].as_u64().is_some_and(|t| t > 1), "{report}");

    let debate = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/debate.toml");
    let run = |bin: &PathBuf, engine: &str| {
        let args = ["run", "--engine", engine, "--workflow", debate, "--seed", "1", "--backend", "cpu"];
        let out = Command::new(bin).args(args).output().expect("run hearth");
        assert!(out.status.success(), "hearth run --engine {engine}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("UTF-8")
    };
    let first = run(&servo, "servo");
    assert_eq!(first, run(&servo, "servo"), "same workflow, seed and backend in Servo: the same bytes");
    let last: Value = serde_json::from_str(first.lines().last().expect("a transcript")).expect("JSON");
    assert_eq!(last["event"], "finished", "{first}");
    // The same runtime build in another engine gives the same bytes. (Natively the CPU
    // kernels are x86 SIMD, not wasm SIMD: sums round differently, and sampled text drifts.)
    let chromium = run(&hearth_binary(), "chromium");
    assert_eq!(first, chromium, "Servo's transcript against Chromium's");

    // Without shared memory, as Servo runs without Hearth's patches: the single-threaded build,
    // each agent a worker with a runtime of its own on the message-passing bus. Custom agents
    // that fault every way give the native message-passing transcript byte for byte.
    let files = tempfile::tempdir().expect("a temporary folder");
    let faults = files.path().join("faults.toml");
    let faulty = hearth_tests::agent_module("faulty_agent").display().to_string();
    std::fs::write(&faults, hearth_tests::FAULTY_AGENTS.replace("{faulty}", &faulty)).expect("write the workflow");
    let messages = |bin: &PathBuf, engine: &str| {
        let args = ["run", "--engine", engine, "--bus", "messages", "--backend", "cpu", "--workflow"];
        let out = Command::new(bin).args(args).arg(&faults).output().expect("run hearth");
        assert!(out.status.success(), "hearth run --engine {engine}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("UTF-8")
    };
    let page = messages(&servo, "servo");
    assert!(page.lines().next().is_some_and(|l| l.contains("\"message_passing\"")), "{page}");
    assert_eq!(page, messages(&hearth_binary(), "native"), "Servo's message-passing transcript against native");
}

/// `hearth open`: the app in a desktop window drawn by Servo, here on a virtual X display
/// (Xvfb). The page sets the window's title once its model is ready; the screen is saved for a
/// person to look at: target/tmp/servo-window.png.
#[test]
fn servo_opens_the_app_in_a_desktop_window() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    // Xvfb picks a free display and writes its number to the descriptor given.
    let mut xvfb = Killed(
        Command::new("Xvfb")
            .args(["-displayfd", "1", "-screen", "0", "1400x1000x24", "-nolisten", "tcp"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb (scripts/test.sh installs it)"),
    );
    let mut number = String::new();
    BufReader::new(xvfb.0.stdout.take().expect("Xvfb's stdout")).read_line(&mut number).expect("a display number");
    let display = format!(":{}", number.trim());

    let _hearth = Killed(
        Command::new(servo_binary())
            .args(["open", "--backend", "cpu"])
            .env("DISPLAY", &display)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("hearth open"),
    );
    let titles = || {
        let out = Command::new("xwininfo").args(["-root", "-tree"]).env("DISPLAY", &display).output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    let ready = loop {
        let tree = titles();
        if let Some(line) = tree.lines().find(|l| l.contains("\"Hearth · ")) {
            break line.to_string();
        }
        assert!(Instant::now() < deadline, "no window titled with a ready model; windows:\n{tree}");
        std::thread::sleep(Duration::from_millis(500));
    };
    println!("window: {ready}");
    assert!(ready.contains("SmolLM2-135M-Instruct") && ready.contains("on the CPU"), "{ready}");
    let png = concat!(env!("CARGO_TARGET_TMPDIR"), "/servo-window.png");
    let shot = Command::new("import").args(["-window", "root", png]).env("DISPLAY", &display).status();
    assert!(shot.is_ok_and(|s| s.success()), "a screenshot of the window");
    // The page has no black areas: what Servo cannot draw as styled (inline SVG with its colours
    // in the style sheet, which resvg never sees) comes out as solid black, as the Monitor's
    // chart (48 000 pixels) once did. Text is dark grey; a little pure black is anti-aliasing.
    let black = Command::new("convert")
        .args([png, "-crop", "1270x890+0+0", "+repage", "-fill", "white", "+opaque", "#000000"])
        .args(["-format", "%[fx:round((1-mean)*w*h)]", "info:"])
        .output()
        .expect("ImageMagick's convert (scripts/test.sh installs it)");
    let black: u64 = String::from_utf8_lossy(&black.stdout).trim().parse().expect("a pixel count");
    assert!(black < 5_000, "{black} pure black pixels in the window: something is drawn black (see {png})");
}
