//! The button that runs one WebGPU and one rayon CPU kernel, and their results.

use hearth_api::probe::KernelRun;
use hearth_api::protocol::{EngineEvent, EngineRequest, KernelOutcome};
use leptos::prelude::*;

use crate::engine_client::{EngineClient, EngineState};

#[component]
pub fn KernelProbe() -> impl IntoView {
    let engine = expect_context::<EngineClient>();
    let state = engine.state;
    // Whether a probe runs, and the latest results: (gpu, cpu).
    let busy = RwSignal::new(false);
    let kernels = RwSignal::new(None::<(KernelOutcome, KernelOutcome)>);
    engine.listen(move |event| match event {
        EngineEvent::KernelsDone { gpu, cpu } => {
            kernels.set(Some((gpu.clone(), cpu.clone())));
            busy.set(false);
        }
        EngineEvent::Error { .. } => busy.set(false),
        _ => {}
    });
    let run = move |_| {
        busy.set(true);
        engine.send(&EngineRequest::RunKernels);
    };
    view! {
        <section class="card" id="kernels">
            <h2>"Kernels"</h2>
            <button
                id="run-kernels"
                on:click=run
                disabled=move || busy.get() || !matches!(state.get(), EngineState::Ready(_))
            >
                {move || if busy.get() { "running…" } else { "Run a WebGPU and a CPU kernel" }}
            </button>
            {move || kernels.get().map(|(gpu, cpu)| view! {
                <div class="results">
                    {outcome_view("kernel-gpu", gpu)}
                    {outcome_view("kernel-cpu", cpu)}
                </div>
            })}
        </section>
    }
}

fn outcome_view(id: &'static str, outcome: KernelOutcome) -> impl IntoView {
    match outcome {
        KernelOutcome::Ran { run } => run_view(id, run).into_any(),
        KernelOutcome::Failed { error } => view! {
            <div class="kernel err" id=id data-correct="false">{error}</div>
        }
        .into_any(),
    }
}

fn run_view(id: &'static str, run: KernelRun) -> impl IntoView {
    let correct = run.is_correct();
    let head = run.head.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ");
    view! {
        <div class=if correct { "kernel ok" } else { "kernel err" } id=id data-correct=correct.to_string()
            data-checksum=run.checksum.to_string() data-head=head.clone()>
            <strong>{run.kernel.clone()}</strong>
            {format!(
                " {}×{}: y[0..4] = [{}], Σy = {}, max error {} — {} in {:.2} ms",
                run.rows, run.cols, head, run.checksum, run.max_abs_error,
                if correct { "correct" } else { "WRONG" }, run.millis,
            )}
        </div>
    }
}
