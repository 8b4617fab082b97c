//! What the runtime found: WebGPU adapter and limits, isolation, build, threads, offline.

use hearth_api::protocol::{GpuStatus, RuntimeBuild};
use leptos::prelude::*;

use crate::engine_client::{EngineClient, EngineState};
use crate::offline::{OfflineRow, OfflineState};

fn build_name(build: RuntimeBuild) -> &'static str {
    match build {
        RuntimeBuild::Threaded => "threaded",
        RuntimeBuild::SingleThreaded => "single-threaded",
    }
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes >> 20)
}

/// The capabilities table; rows fill in when the engine worker reports `Ready`.
#[component]
pub fn CapabilitiesPanel(offline: ReadSignal<OfflineState>) -> impl IntoView {
    let engine = expect_context::<EngineClient>();
    let choice = engine.choice;
    let state = engine.state;
    let isolated = choice.get_untracked().cross_origin_isolated;
    view! {
        <section class="card" id="capabilities">
            <h2>"Runtime"</h2>
            <table>
                <tr>
                    <th>"crossOriginIsolated"</th>
                    <td id="cross-origin-isolated" class=if isolated { "ok" } else { "warn" }>{isolated.to_string()}</td>
                </tr>
                <tr>
                    <th>"runtime build"</th>
                    <td>
                        <span id="runtime-build">{move || build_name(choice.get().build)}</span>
                        <span class="why" id="runtime-build-reason">{move || format!(" — {}", choice.get().reason)}</span>
                    </td>
                </tr>
                <OfflineRow state=offline/>
                {move || match state.get() {
                    EngineState::Starting => view! {
                        <tr><th>"engine"</th><td id="engine-status">"starting…"</td></tr>
                    }.into_any(),
                    EngineState::Failed(message) => view! {
                        <tr><th>"engine"</th><td id="engine-status" class="err">{message}</td></tr>
                    }.into_any(),
                    EngineState::Ready(caps) => view! {
                        <tr><th>"engine"</th><td id="engine-status" class="ok">"ready"</td></tr>
                        <tr><th>"loaded build"</th><td id="loaded-build">{build_name(caps.build)}</td></tr>
                        <tr><th>"rayon threads"</th><td id="threads">{caps.threads}</td></tr>
                        {gpu_rows(caps.gpu)}
                    }.into_any(),
                }}
            </table>
        </section>
    }
}

fn gpu_rows(gpu: GpuStatus) -> impl IntoView {
    match gpu {
        GpuStatus::Available { adapter } => {
            let name = if adapter.name.is_empty() { "(name hidden by the browser)".to_string() } else { adapter.name };
            view! {
                <tr><th>"WebGPU adapter"</th><td id="gpu-adapter" class="ok">{name}</td></tr>
                <tr><th>"backend / type"</th><td>{format!("{} / {} {}", adapter.backend, adapter.device_type, adapter.driver)}</td></tr>
                <tr>
                    <th>"shader-f16"</th>
                    <td id="gpu-f16">
                        {if adapter.shader_f16 {
                            "yes: F16, Q4_0, Q4_1 and Q8_0 weights are dequantised in f16"
                        } else {
                            "no: every kernel computes in f32"
                        }}
                    </td>
                </tr>
                <tr>
                    <th>"limits"</th>
                    <td id="gpu-limits">
                        {format!(
                            "storage binding {}, buffer {}, {} workgroups per dimension, {} invocations per workgroup",
                            mib(adapter.max_storage_buffer_binding_size),
                            mib(adapter.max_buffer_size),
                            adapter.max_compute_workgroups_per_dimension,
                            adapter.max_compute_invocations_per_workgroup,
                        )}
                    </td>
                </tr>
            }
            .into_any()
        }
        GpuStatus::Unavailable { reason } => view! {
            <tr>
                <th>"WebGPU adapter"</th>
                <td id="gpu-unavailable" class="warn">{format!("none: {reason}. Inference will use the CPU.")}</td>
            </tr>
        }
        .into_any(),
    }
}
