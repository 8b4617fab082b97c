//! `--engine chromium|servo`: the app's page in a web engine, driven by `hearth` itself.
//! `hearth probe` reports what the page has; `hearth generate` in the page gives the same
//! greedy text as the native engine on the same backend. The Servo test uses the binary that
//! scripts/build-servo.sh builds (its first build is long).

use std::path::PathBuf;
use std::process::Command;

use hearth_core::catalog::models_dir;
use hearth_tests::hearth_binary;
use serde_json::Value;

fn json_of(bin: &PathBuf, args: &[&str]) -> Value {
    let out = Command::new(bin).args(args).output().expect("run hearth");
    assert!(out.status.success(), "hearth {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON in {stdout:?}"));
    serde_json::from_str(last).expect("a JSON object")
}

/// The greedy completion of a fixed prompt: (text, backend).
fn completion(bin: &PathBuf, engine: &str, backend: &str) -> (String, String) {
    let args = ["generate", "--engine", engine, "--backend", backend, "--json", "--max-tokens", "8"];
    let done = json_of(bin, &[&args[..], &["--prompt", "The capital of France is"]].concat());
    (done["text"].as_str().expect("text").to_string(), done["backend"].as_str().unwrap_or_default().to_string())
}

/// `hearth` with Servo built in, from the cache (scripts/build-servo.sh).
fn servo_binary() -> PathBuf {
    let bin = models_dir().parent().expect("the cache folder").join("servo-target/servo/hearth");
    assert!(bin.is_file(), "{} is missing: build it with scripts/build-servo.sh", bin.display());
    bin
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

#[test]
fn generating_in_chromium_gives_the_native_text() {
    let bin = hearth_binary();
    let (native, _) = completion(&bin, "native", "cpu");
    let (page, backend) = completion(&bin, "chromium", "cpu");
    assert_eq!(backend, "cpu");
    assert_eq!(page, native, "the page's greedy text against the native engine's");
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
    // wgpu natively and Servo's WebGPU run the same WGSL on the same lavapipe device.
    let (native, _) = completion(&hearth_binary(), "native", "gpu");
    println!("servo: {page:?}, native GPU: {native:?}");
    assert_eq!(page, native, "Servo's greedy text on WebGPU against native wgpu's");
}
