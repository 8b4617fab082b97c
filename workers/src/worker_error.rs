//! An agent's Web Worker dying: its `error` event (a trap or an uncaught exception in it, or a
//! script that failed to load), kept for the hub to read as the agent's crash.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use web_sys::{ErrorEvent, Worker};

/// The message of `worker`'s latest `error` event, once there is one.
pub(crate) type Died = Rc<RefCell<Option<String>>>;

/// Listens for `worker`'s errors: returns where their message goes, and the listener, which
/// must live as long as the worker.
pub(crate) fn watch(worker: &Worker) -> (Died, Closure<dyn FnMut(ErrorEvent)>) {
    let died = Died::default();
    let on_error = {
        let died = died.clone();
        Closure::<dyn FnMut(ErrorEvent)>::new(move |event: ErrorEvent| {
            web_sys::console::error_1(&format!("agent worker: {}", event.message()).into());
            *died.borrow_mut() = Some(event.message());
        })
    };
    worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    (died, on_error)
}
