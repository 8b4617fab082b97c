//! The monitor view: what the engine is doing, from the samples its worker sends twice a
//! second (see [`MonitorSample`]): tokens/s over time as a chart, how busy the engine and each
//! CPU pool thread are, the GPU's task queue, memory in use (wasm heap, model, GPU buffers),
//! and the agents' bus traffic; and, on the GPU backend, the GPU time of one decode step per
//! kernel family.

use std::collections::VecDeque;

use hearth_api::protocol::{EngineEvent, EngineRequest, GpuStatus, MonitorSample};
use leptos::prelude::*;

use crate::engine_client::{EngineClient, EngineState};
use crate::model::ModelStatus;

/// Samples kept: two minutes at two a second.
const HISTORY: usize = 240;

/// Milliseconds of one decode step per op family, slowest first.
type StepProfile = Vec<(String, f64)>;

/// The engine's latest monitor samples, oldest first (in the context: `window.hearth.monitor()`
/// reads the last).
#[derive(Clone, Copy)]
pub struct MonitorHistory(pub RwSignal<VecDeque<MonitorSample>>);

impl MonitorHistory {
    pub fn new(engine: &EngineClient) -> Self {
        let samples = RwSignal::new(VecDeque::new());
        engine.listen(move |event| {
            if let EngineEvent::Monitor { sample } = event {
                samples.update(|samples| {
                    if samples.len() == HISTORY {
                        samples.pop_front();
                    }
                    samples.push_back(sample.clone());
                })
            }
        });
        Self(samples)
    }
}

const CHART_WIDTH: f64 = 480.0;
const CHART_HEIGHT: f64 = 100.0;

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The rate of a counter between two samples, per second.
fn rate(from: &MonitorSample, to: &MonitorSample, counter: impl Fn(&MonitorSample) -> f64) -> f64 {
    let seconds = (to.at_ms - from.at_ms) / 1e3;
    if seconds <= 0.0 { 0.0 } else { ((counter(to) - counter(from)) / seconds).max(0.0) }
}

/// The first and the last of the last `window` + 1 samples: rates over a few seconds, so one
/// quiet sample does not read 0.
fn recent_span(samples: &VecDeque<MonitorSample>, window: usize) -> Option<(&MonitorSample, &MonitorSample)> {
    let from = samples.len().checked_sub(window + 1).and_then(|i| samples.get(i)).or(samples.front())?;
    Some((from, samples.back()?))
}

fn recent_rate(samples: &VecDeque<MonitorSample>, window: usize, counter: impl Fn(&MonitorSample) -> f64) -> f64 {
    recent_span(samples, window).map_or(0.0, |(from, to)| rate(from, to, counter))
}

/// How busy each CPU pool thread was over the last `window` samples (% of wall time), and the
/// same for work outside the pool (the engine worker itself).
fn thread_utilisation(samples: &VecDeque<MonitorSample>, window: usize) -> (Vec<f64>, f64) {
    let Some((from, to)) = recent_span(samples, window) else { return (vec![], 0.0) };
    // Busy ms per second of wall time, as a percentage.
    let percent = |busy: &dyn Fn(&MonitorSample) -> f64| (rate(from, to, busy) / 10.0).min(100.0);
    let threads = (0..to.cpu_busy.threads.len())
        .map(|i| percent(&|s: &MonitorSample| s.cpu_busy.threads.get(i).copied().unwrap_or(0.0)))
        .collect();
    (threads, percent(&|s: &MonitorSample| s.cpu_busy.outside))
}

/// The tokens/s chart's points, scaled to the largest rate, and that rate: a step line over
/// the last two minutes of the worker's clock, each rate drawn across the interval it was
/// measured over (a worker busy with a long forward pass samples less often).
fn chart_points(samples: &VecDeque<MonitorSample>) -> (String, f64) {
    let Some(now) = samples.back().map(|s| s.at_ms) else { return (String::new(), 1.0) };
    let span_ms = HISTORY as f64 * 500.0;
    let x = |at_ms: f64| (CHART_WIDTH - (now - at_ms) / span_ms * CHART_WIDTH).max(0.0);
    let steps: Vec<(f64, f64, f64)> = samples
        .iter()
        .zip(samples.iter().skip(1))
        .map(|(a, b)| (x(a.at_ms), x(b.at_ms), rate(a, b, |s| s.tokens as f64)))
        .collect();
    let top = steps.iter().map(|s| s.2).fold(1.0, f64::max);
    let y = |r: f64| CHART_HEIGHT - r / top * (CHART_HEIGHT - 4.0);
    let points = steps
        .iter()
        .flat_map(|&(x0, x1, r)| [format!("{x0:.1},{:.1}", y(r)), format!("{x1:.1},{:.1}", y(r))])
        .collect::<Vec<_>>()
        .join(" ");
    (points, top)
}

#[component]
pub fn Monitor() -> impl IntoView {
    let engine = expect_context::<EngineClient>();
    let model = expect_context::<ModelStatus>();
    let MonitorHistory(samples) = expect_context::<MonitorHistory>();
    // The last profile of a decode step, or why there is none; and whether one is running.
    let profile = RwSignal::new(None::<Result<StepProfile, String>>);
    let profiling = RwSignal::new(false);
    let run_profile = {
        move |_| {
            profiling.set(true);
            engine.request(
                |id| EngineRequest::ProfileStep { id },
                move |event| {
                    match event {
                        EngineEvent::StepProfile { ops, .. } => profile.set(Some(Ok(ops.clone()))),
                        EngineEvent::Failed { message, .. } => profile.set(Some(Err(message.clone()))),
                        _ => return,
                    }
                    profiling.set(false);
                },
            );
        }
    };
    let last = move || samples.with(|s| s.back().cloned().unwrap_or_default());
    let tokens_per_s = move || samples.with(|s| recent_rate(s, 4, |x| x.tokens as f64));
    // Busy milliseconds per second of wall time: the share of time the engine computes.
    let busy = move || samples.with(|s| recent_rate(s, 4, |x| x.busy_ms) / 10.0);
    let bus_rate = move || samples.with(|s| recent_rate(s, 4, |x| x.bus_messages as f64));
    let submit_rate = move || samples.with(|s| recent_rate(s, 4, |x| x.gpu_queue.map_or(0.0, |q| q.submitted as f64)));
    let utilisation = move || samples.with(|s| thread_utilisation(s, 4));
    let bus_bytes_rate = move || samples.with(|s| recent_rate(s, 4, |x| x.bus_bytes as f64));
    let state = engine.state;
    let adapter = move || match state.get() {
        EngineState::Ready(caps) => match caps.gpu {
            GpuStatus::Available { adapter } => adapter.name,
            GpuStatus::Unavailable { .. } => "none".to_string(),
        },
        _ => String::new(),
    };
    view! {
        <section class="card monitor" id="monitor" data-samples=move || samples.with(VecDeque::len)>
            <h2>"Monitor"</h2>
            <figure>
                <svg id="tokens-chart" viewBox=format!("0 0 {CHART_WIDTH} {CHART_HEIGHT}") width=CHART_WIDTH
                    height=CHART_HEIGHT role="img" aria-label="Tokens per second over the last two minutes">
                    // Colours as presentation attributes, not CSS: Servo draws inline SVG with
                    // resvg, which sees no style sheet (its default fill is black).
                    <rect x="0" y="0" width=CHART_WIDTH height=CHART_HEIGHT fill="#f6f3ee"></rect>
                    <polyline points=move || samples.with(|s| chart_points(s).0) fill="none" stroke="#b4541a"
                        stroke-width="1.5"></polyline>
                </svg>
                <figcaption>
                    "Tokens/s over the last two minutes (top of the chart: "
                    {move || samples.with(|s| format!("{:.1}", chart_points(s).1))} ")"
                </figcaption>
            </figure>
            <table>
                <tr>
                    <th>"Tokens/s"</th>
                    <td id="monitor-tokens-per-s">{move || format!("{:.1}", tokens_per_s())}</td>
                </tr>
                <tr>
                    <th>"Tokens generated"</th>
                    <td id="monitor-tokens">{move || last().tokens}</td>
                </tr>
                <tr>
                    <th>"Engine busy"</th>
                    <td id="monitor-busy">
                        {move || format!("{:.0}% on {} threads", busy().min(100.0), last().threads)}
                    </td>
                </tr>
                <tr>
                    <th>"CPU threads"</th>
                    <td id="monitor-cpu" data-threads=move || last().cpu_busy.threads.len()
                        data-clock-ms=move || format!("{:.0}", last().at_ms)>
                        {move || {
                            let (threads, outside) = utilisation();
                            let busy = last().cpu_busy;
                            let rows = threads
                                .into_iter()
                                .zip(busy.threads)
                                .enumerate()
                                .map(|(i, (percent, ms))| (format!("pool thread {i}"), percent, ms));
                            // Work outside the pool is the engine worker's own (the single-threaded build).
                            let outside = (busy.outside > 0.0).then(|| ("engine worker".to_string(), outside, busy.outside));
                            rows.chain(outside)
                                .map(|(name, percent, ms)| {
                                    let label = format!(" {name} {percent:.0}%");
                                    view! {
                                        <div class="thread" data-thread=name data-busy=format!("{percent:.1}")
                                            data-busy-ms=format!("{ms:.1}")>
                                            <meter min="0" max="100" value=percent></meter>
                                            {label}
                                        </div>
                                    }
                                })
                                .collect_view()
                        }}
                    </td>
                </tr>
                <tr>
                    <th>"Time per token"</th>
                    <td id="monitor-ms-per-token">
                        {move || {
                            let s = last();
                            if s.tokens == 0 { "—".to_string() } else { format!("{:.1} ms", s.busy_ms / s.tokens as f64) }
                        }}
                    </td>
                </tr>
                <tr>
                    <th>"wasm heap"</th>
                    <td id="monitor-wasm" data-bytes=move || last().wasm_bytes>{move || mib(last().wasm_bytes)}</td>
                </tr>
                <tr>
                    <th>"Model"</th>
                    <td id="monitor-model" data-bytes=move || last().model_bytes>{move || mib(last().model_bytes)}</td>
                </tr>
                <tr>
                    <th>"GPU buffers"</th>
                    <td id="monitor-gpu">
                        {move || match last().gpu_bytes {
                            Some(bytes) => format!("{} on {}", mib(bytes), adapter()),
                            None => "no GPU device".to_string(),
                        }}
                    </td>
                </tr>
                <tr>
                    <th>"GPU queue"</th>
                    <td id="monitor-gpu-queue"
                        data-submitted=move || last().gpu_queue.map_or(0, |q| q.submitted)
                        data-in-flight=move || last().gpu_queue.map_or(0, |q| q.in_flight)>
                        {move || match last().gpu_queue {
                            Some(q) => format!(
                                "{} in flight (at most {} since the last sample), {:.1} submissions/s, {} in all",
                                q.in_flight,
                                q.peak_in_flight,
                                submit_rate(),
                                q.submitted
                            ),
                            None => "no GPU device".to_string(),
                        }}
                    </td>
                </tr>
                <tr>
                    <th>"Agents' bus"</th>
                    <td id="monitor-bus" data-messages=move || last().bus_messages>
                        {move || {
                            let s = last();
                            format!(
                                "{:.0} messages/s, {:.1} KiB/s ({} messages, {} so far)",
                                bus_rate(),
                                bus_bytes_rate() / 1024.0,
                                s.bus_messages,
                                mib(s.bus_bytes)
                            )
                        }}
                    </td>
                </tr>
            </table>
            <h3>"Time per op family, one decode step"</h3>
            <button id="profile-step"
                disabled=move || profiling.get() || !model.is_loaded()
                on:click=run_profile>
                "Profile a decode step"
            </button>
            <span class="why">" on the backend the model runs on (on the GPU, each op submitted alone and awaited)"</span>
            {move || match profile.get() {
                None => ().into_any(),
                Some(Err(e)) => view! { <p id="step-profile-error" class="err">{e}</p> }.into_any(),
                Some(Ok(ops)) => {
                    let total: f64 = ops.iter().map(|op| op.1).sum();
                    view! {
                        <table id="step-profile" data-total-ms=format!("{total:.3}")>
                            {ops.into_iter().map(|(family, ms)| view! {
                                <tr data-op=family.clone() data-ms=ms.to_string()>
                                    <th>{family.clone()}</th>
                                    <td>{format!("{ms:.2} ms")}</td>
                                    <td>{format!("{:.0}%", 100.0 * ms / total.max(1e-9))}</td>
                                </tr>
                            }).collect_view()}
                            <tr><th>"total"</th><td>{format!("{total:.2} ms")}</td><td></td></tr>
                        </table>
                    }.into_any()
                }
            }}
        </section>
    }
}
