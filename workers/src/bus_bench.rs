//! The agents' bus in the page against `postMessage`, between the engine worker and one other
//! worker, with 64-byte messages: one-way latency (half a ping-pong round trip, p50 and p99)
//! and messages per second streamed one way. The shared-memory side is the bus the workflows
//! use, its far end an agent thread (see [`crate::thread`]); the `postMessage` side a plain
//! worker that echoes.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hearth_agents::bus::{HubPort, SharedBus, SharedBusConfig};
use hearth_api::protocol::BusFigures;
use js_sys::{Function, Promise, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Blob, BlobPropertyBag, MessageEvent, Url, Worker};

use crate::engine::EngineWorker;

const PINGS: usize = 2_000;
const STREAM: usize = 20_000;
const MESSAGE: [u8; 64] = [7; 64];
const WAIT: Option<Duration> = Some(Duration::from_secs(10));

fn figures(transport: &str, mut one_way: Vec<f64>, stream_ms: f64) -> BusFigures {
    one_way.sort_by(f64::total_cmp);
    let at = |q: f64| one_way[((one_way.len() - 1) as f64 * q) as usize];
    BusFigures {
        transport: transport.into(),
        p50_us: at(0.5),
        p99_us: at(0.99),
        messages_per_s: STREAM as f64 / (stream_ms / 1e3),
    }
}

/// Both transports' figures, the shared-memory bus first.
pub(crate) async fn run(engine: &EngineWorker) -> Result<Vec<BusFigures>, String> {
    Ok(vec![shared_bus(engine).await?, post_message(engine).await?])
}

async fn shared_bus(engine: &EngineWorker) -> Result<BusFigures, String> {
    let (hub, mut ports) = SharedBus::new(1, SharedBusConfig::default());
    let agent = ports.pop().ok_or("the bus has no port")?;
    let started = Arc::new(AtomicBool::new(false));
    let running = started.clone();
    let _echo = crate::thread::spawn(Box::new(move || {
        running.store(true, Ordering::Release);
        for _ in 0..PINGS {
            let Ok(m) = agent.recv(WAIT) else { return };
            if agent.send(&m, WAIT).is_err() {
                return;
            }
        }
        for _ in 0..STREAM {
            if agent.send(&MESSAGE, WAIT).is_err() {
                return;
            }
        }
    }))?;
    // A nested worker starts through its parent's event loop: let it run until the echo does.
    let deadline = engine.now_ms() + 10_000.0;
    while !started.load(Ordering::Acquire) {
        if engine.now_ms() > deadline {
            return Err("the echo worker did not start within 10 s".into());
        }
        crate::engine::yield_to_event_loop().await;
    }
    let fail = |e: hearth_agents::bus::BusError| format!("the shared-memory bus: {e}");
    let mut one_way = Vec::with_capacity(PINGS);
    for _ in 0..PINGS {
        let t = engine.now_ms();
        hub.send(0, &MESSAGE, WAIT).map_err(fail)?;
        hub.recv(WAIT).map_err(fail)?;
        one_way.push((engine.now_ms() - t) * 1e3 / 2.0);
    }
    let t = engine.now_ms();
    for _ in 0..STREAM {
        hub.recv(WAIT).map_err(fail)?;
    }
    Ok(figures("shared-memory bus (Atomics.wait)", one_way, engine.now_ms() - t))
}

/// A worker that sends back what it gets; asked for a stream (a number), it sends that many.
const ECHO: &str = "onmessage = ({ data }) => { \
    if (typeof data === 'number') { const m = new Uint8Array(64).fill(7); for (let i = 0; i < data; i++) postMessage(m); } \
    else postMessage(data); };";

async fn post_message(engine: &EngineWorker) -> Result<BusFigures, String> {
    let js = |e: JsValue| format!("postMessage: {e:?}");
    let parts = js_sys::Array::of1(&JsValue::from_str(ECHO));
    let options = BlobPropertyBag::new();
    options.set_type("text/javascript");
    let blob = Blob::new_with_str_sequence_and_options(&parts, &options).map_err(js)?;
    let url = Url::create_object_url_with_blob(&blob).map_err(js)?;
    let worker = Worker::new(&url).map_err(js)?;
    let _ = Url::revoke_object_url(&url);
    // Each arriving message counts down; reaching zero resolves the promise being awaited.
    let waiting: Rc<RefCell<Option<Function>>> = Rc::default();
    let left = Rc::new(Cell::new(0usize));
    let on_message = {
        let (waiting, left) = (waiting.clone(), left.clone());
        Closure::<dyn FnMut(MessageEvent)>::new(move |_event: MessageEvent| {
            left.set(left.get().saturating_sub(1));
            if left.get() == 0
                && let Some(resolve) = waiting.borrow_mut().take()
            {
                let _ = resolve.call0(&JsValue::NULL);
            }
        })
    };
    worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    let arrivals = |n: usize| {
        left.set(n);
        Promise::new(&mut |resolve, _| *waiting.borrow_mut() = Some(resolve))
    };
    let message = Uint8Array::from(&MESSAGE[..]);
    let mut one_way = Vec::with_capacity(PINGS);
    for _ in 0..PINGS {
        let arrived = arrivals(1);
        let t = engine.now_ms();
        worker.post_message(&message).map_err(js)?;
        JsFuture::from(arrived).await.map_err(js)?;
        one_way.push((engine.now_ms() - t) * 1e3 / 2.0);
    }
    let arrived = arrivals(STREAM);
    let t = engine.now_ms();
    worker.post_message(&JsValue::from(STREAM as u32)).map_err(js)?;
    JsFuture::from(arrived).await.map_err(js)?;
    let stream_ms = engine.now_ms() - t;
    worker.terminate();
    Ok(figures("postMessage (structured clone)", one_way, stream_ms))
}
