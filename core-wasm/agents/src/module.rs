//! Custom agents: `.wasm` modules run in their own store with their own memory, a fuel budget
//! per turn and a memory limit, and no imports but the agent ABI.
//!
//! # The agent ABI
//! Exports: `memory`, `hearth_alloc(len: i32) -> i32` (a buffer the host may fill) and
//! `hearth_receive(ptr: i32, len: i32)` (a turn: JSON `{"step", "turn", "attempt", "request",
//! "config"}`, UTF-8). Imports, all from module `hearth`, all pointers into the agent's memory:
//!
//! | import | meaning |
//! |---|---|
//! | `send(ptr, len)` | append text to this turn's message |
//! | `ask_llm(ptr, len) -> i32` | JSON `{"prompt", "system"?, "max_tokens"?}`; the reply's length |
//! | `tool(name_ptr, name_len, args_ptr, args_len) -> i32` | output length, or `-1 - len` of an error |
//! | `take(ptr)` | copy the last `ask_llm`/`tool` result to `ptr` |
//! | `log(ptr, len)` | a line in the transcript (`panic: ...` marks a panic) |
//! | `clock() -> i64` | the logical clock: the workflow step |
//!
//! The `hearth-agent-sdk` crate wraps all of this. The interpreter is wasmi, so a module runs the
//! same in a Web Worker and natively, and its budget is counted in instructions (fuel), which
//! makes "too slow" a deterministic verdict.

use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;
use wasmi::{
    Caller, Config, Engine, Extern, Instance, Linker, Module, Store, StoreLimits, StoreLimitsBuilder, TypedFunc,
    TypedResumableCall, TypedResumableCallHostTrap, Val,
};

use hearth_api::agents::FaultKind;

use super::hub_messages::{LlmRequest, ToAgent, ToHub};
use super::turn::turn_seed;
use hearth_api::workflow::ModuleLimits;

/// The imports a module may ask for, all in module [`ABI_MODULE`].
pub const ABI_MODULE: &str = "hearth";
pub const ABI_IMPORTS: [&str; 6] = ["send", "ask_llm", "tool", "take", "log", "clock"];

/// Instructions run between two looks at the wall clock: a few milliseconds natively.
const FUEL_SLICE: u64 = 1_000_000;

#[derive(Debug, Error, PartialEq)]
pub enum ModuleError {
    #[error("not a valid wasm module: {0}")]
    Invalid(String),
    #[error("imports `{module}.{name}`, which the agent ABI does not offer (only {ABI_MODULE}.{{{}}})", ABI_IMPORTS.join(", "))]
    ForbiddenImport { module: String, name: String },
    #[error("does not export `{0}` (the ABI needs memory, hearth_alloc and hearth_receive)")]
    MissingExport(String),
    #[error("cannot be instantiated: {0}")]
    Instantiate(String),
}

/// A turn failed; the agent's instance is not to be used again.
#[derive(Debug, PartialEq)]
pub struct Fault {
    pub kind: FaultKind,
    pub detail: String,
}

/// What a module agent's host calls need: the messages it has for the hub and the turn it is in.
pub struct Host {
    /// Messages for the hub, in order, until the agent's driver takes them.
    outbox: Vec<ToHub>,
    limits: StoreLimits,
    /// The last `ask_llm`/`tool` result, for `take`.
    pending: Vec<u8>,
    panic: Option<String>,
    step: u32,
    /// The turn's seed and how many LLM calls it made (each call gets its own seed).
    seed: u64,
    llm_calls: u64,
    llm: LlmRequest,
    /// When the module last started computing: the turn's start, or the hub's last reply.
    computing_since: web_time::Instant,
}

/// A host call that needs the hub's answer (`ask_llm`, `tool`) suspends the module: the call
/// goes out with the agent's other messages, and the module resumes when the answer comes.
/// So a module agent never blocks, and runs the same where nothing may block (a Web Worker
/// without shared memory).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Suspend {
    Llm,
    Tool,
}

impl std::fmt::Display for Suspend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Suspend::Llm => "waiting for the LLM",
            Suspend::Tool => "waiting for a tool",
        })
    }
}

impl wasmi::errors::HostError for Suspend {}

/// Where a turn stands after [`ModuleAgent::turn`] or [`ModuleAgent::resume`].
#[derive(Debug, PartialEq)]
pub enum TurnState {
    /// The turn is over.
    Done,
    /// The module waits for the hub's answer to the call among [`ModuleAgent::take_outbox`].
    Waiting,
}

/// An instantiated agent module.
pub struct ModuleAgent {
    store: Store<Host>,
    alloc: TypedFunc<i32, i32>,
    receive: TypedFunc<(i32, i32), ()>,
    instance: Instance,
    limits: ModuleLimits,
    /// Fuel left in this turn beyond the slice the store holds.
    fuel_left: u64,
    /// The turn's call, suspended in a host call until the hub answers.
    suspended: Option<(TypedResumableCallHostTrap<()>, Suspend)>,
}

impl ModuleAgent {
    /// Checks `wasm` without running it: valid, importing only the ABI, exporting what it needs.
    pub fn check(wasm: &[u8]) -> Result<(), ModuleError> {
        let engine = Engine::default();
        let module = Module::new(&engine, wasm).map_err(|e| ModuleError::Invalid(e.to_string()))?;
        check_imports(&module)?;
        for export in ["memory", "hearth_alloc", "hearth_receive"] {
            if module.get_export(export).is_none() {
                return Err(ModuleError::MissingExport(export.into()));
            }
        }
        Ok(())
    }

    /// Compiles, checks and instantiates `wasm`; `llm` holds the agent's sampling defaults.
    pub fn new(wasm: &[u8], limits: ModuleLimits, llm: LlmRequest) -> Result<Self, ModuleError> {
        let mut config = Config::default();
        config.consume_fuel(true);
        let engine = Engine::new(&config);
        let module = Module::new(&engine, wasm).map_err(|e| ModuleError::Invalid(e.to_string()))?;
        check_imports(&module)?;
        let host = Host {
            outbox: Vec::new(),
            limits: StoreLimitsBuilder::new().memory_size(limits.memory_bytes).trap_on_grow_failure(true).build(),
            pending: Vec::new(),
            panic: None,
            step: 0,
            seed: 0,
            llm_calls: 0,
            llm,
            computing_since: web_time::Instant::now(),
        };
        let mut store = Store::new(&engine, host);
        store.limiter(|h| &mut h.limits);
        let (instance, alloc, receive) = Self::instantiate(&engine, &module, &mut store, limits)?;
        Ok(Self { store, alloc, receive, instance, limits, fuel_left: 0, suspended: None })
    }

    #[allow(clippy::type_complexity)]
    fn instantiate(
        engine: &Engine,
        module: &Module,
        store: &mut Store<Host>,
        limits: ModuleLimits,
    ) -> Result<(Instance, TypedFunc<i32, i32>, TypedFunc<(i32, i32), ()>), ModuleError> {
        store.set_fuel(limits.fuel).map_err(|e| ModuleError::Instantiate(e.to_string()))?;
        let linker = abi_linker(engine).map_err(|e| ModuleError::Instantiate(e.to_string()))?;
        let instance =
            linker.instantiate_and_start(&mut *store, module).map_err(|e| ModuleError::Instantiate(e.to_string()))?;
        if instance.get_memory(&*store, "memory").is_none() {
            return Err(ModuleError::MissingExport("memory".into()));
        }
        let alloc = instance
            .get_typed_func::<i32, i32>(&*store, "hearth_alloc")
            .map_err(|_| ModuleError::MissingExport("hearth_alloc".into()))?;
        let receive = instance
            .get_typed_func::<(i32, i32), ()>(&*store, "hearth_receive")
            .map_err(|_| ModuleError::MissingExport("hearth_receive".into()))?;
        Ok((instance, alloc, receive))
    }

    /// Starts one turn: hands `input` (the turn's JSON) to `hearth_receive` with a fresh fuel
    /// budget, and runs it until it ends or waits for the hub. What it sends is in
    /// [`Self::take_outbox`].
    pub fn turn(&mut self, step: u32, seed: u64, input: &str) -> Result<TurnState, Fault> {
        let host = self.store.data_mut();
        (host.step, host.seed, host.llm_calls, host.panic) = (step, seed, 0, None);
        host.computing_since = web_time::Instant::now();
        self.suspended = None;
        self.fuel_left = self.limits.fuel;
        let ptr_len = (|| {
            self.store.set_fuel(self.fuel_left)?;
            let len = i32::try_from(input.len()).map_err(|_| wasmi::Error::new("the turn is too large"))?;
            let ptr = self.alloc.call(&mut self.store, len)?;
            write(&self.instance, &mut self.store, ptr, input.as_bytes())?;
            self.fuel_left = self.store.get_fuel()?;
            Ok((ptr, len))
        })();
        let args = ptr_len.map_err(|e| self.classify(e))?;
        // The turn's instructions run in slices; between two, the wall clock is read.
        self.store.set_fuel(self.fuel_left.min(FUEL_SLICE)).map_err(|e| crash(e.to_string()))?;
        let call = self.receive.call_resumable(&mut self.store, args).map_err(|e| self.classify(e))?;
        self.run(call)
    }

    /// Hands the hub's answer to the call the module waits on, and runs on.
    pub fn resume(&mut self, answer: ToAgent) -> Result<TurnState, Fault> {
        let Some((call, waiting)) = self.suspended.take() else {
            return Err(Fault { kind: FaultKind::Trap, detail: format!("an answer with no call waiting: {answer:?}") });
        };
        let host = self.store.data_mut();
        let result = match (waiting, answer) {
            (Suspend::Llm, ToAgent::LlmReply { text, .. }) => {
                host.pending = text.into_bytes();
                len_i32(host.pending.len())
            }
            (Suspend::Tool, ToAgent::ToolReply { ok, output }) => {
                host.pending = output.into_bytes();
                let n = len_i32(host.pending.len());
                if ok { n } else { -1 - n }
            }
            (Suspend::Llm, other) => {
                return Err(self.classify(wasmi::Error::new(format!("the hub answered an LLM call with {other:?}"))));
            }
            (Suspend::Tool, other) => {
                return Err(self.classify(wasmi::Error::new(format!("the hub answered a tool call with {other:?}"))));
            }
        };
        host.computing_since = web_time::Instant::now();
        let call = call.resume(&mut self.store, &[Val::I32(result)]).map_err(|e| self.classify(e))?;
        self.run(call)
    }

    /// The messages the module has for the hub, in order.
    pub fn take_outbox(&mut self) -> Vec<ToHub> {
        std::mem::take(&mut self.store.data_mut().outbox)
    }

    fn run(&mut self, mut call: TypedResumableCall<()>) -> Result<TurnState, Fault> {
        let slice = |fuel_left: u64| fuel_left.min(FUEL_SLICE);
        loop {
            match call {
                TypedResumableCall::Finished(()) => return Ok(TurnState::Done),
                TypedResumableCall::HostTrap(trap) => {
                    if let Some(&waiting) = trap.host_error().downcast_ref::<Suspend>() {
                        self.suspended = Some((trap, waiting));
                        return Ok(TurnState::Waiting);
                    }
                    return Err(self.classify(wasmi::Error::new(trap.host_error().to_string())));
                }
                TypedResumableCall::OutOfFuel(out_of_fuel) => {
                    self.fuel_left -= slice(self.fuel_left);
                    if self.fuel_left < out_of_fuel.required_fuel() {
                        return Err(self.out_of_fuel());
                    }
                    let ms = self.limits.time_budget_ms;
                    if ms > 0 && self.store.data().computing_since.elapsed() > Duration::from_millis(ms) {
                        return Err(Fault { kind: FaultKind::TimeBudget, detail: time_budget_detail(ms) });
                    }
                    self.store.set_fuel(slice(self.fuel_left)).map_err(|e| crash(e.to_string()))?;
                    call = out_of_fuel.resume(&mut self.store).map_err(|e| self.classify(e))?;
                }
            }
        }
    }

    fn out_of_fuel(&self) -> Fault {
        Fault {
            kind: FaultKind::TimeBudget,
            detail: format!("ran past its budget of {} instructions in one turn", self.limits.fuel),
        }
    }

    fn classify(&mut self, e: wasmi::Error) -> Fault {
        let host = self.store.data_mut();
        if let Some(message) = host.panic.take() {
            return Fault { kind: FaultKind::Panic, detail: message };
        }
        match e.as_trap_code() {
            Some(wasmi::TrapCode::OutOfFuel) => self.out_of_fuel(),
            Some(wasmi::TrapCode::GrowthOperationLimited) => Fault {
                kind: FaultKind::Memory,
                detail: format!("asked for more than its {} MiB of memory", self.limits.memory_bytes >> 20),
            },
            _ => Fault { kind: FaultKind::Trap, detail: e.to_string() },
        }
    }
}

fn check_imports(module: &Module) -> Result<(), ModuleError> {
    for import in module.imports() {
        let allowed = import.module() == ABI_MODULE
            && ABI_IMPORTS.contains(&import.name())
            && matches!(import.ty(), wasmi::ExternType::Func(_));
        if !allowed {
            return Err(ModuleError::ForbiddenImport {
                module: import.module().to_string(),
                name: import.name().to_string(),
            });
        }
    }
    Ok(())
}

/// The fault's text for an agent past its wall-clock budget, the same whether the agent itself
/// or the hub noticed, so a transcript does not depend on which did.
pub fn time_budget_detail(ms: u64) -> String {
    format!("ran past its time budget of {ms} ms")
}

fn crash(detail: String) -> Fault {
    Fault { kind: FaultKind::Crash, detail }
}

fn memory(instance: &Instance, store: impl wasmi::AsContext) -> Result<wasmi::Memory, wasmi::Error> {
    instance.get_memory(store, "memory").ok_or_else(|| wasmi::Error::new("the module has no memory"))
}

fn write(instance: &Instance, store: &mut Store<Host>, ptr: i32, bytes: &[u8]) -> Result<(), wasmi::Error> {
    memory(instance, &*store)?
        .write(store, ptr as u32 as usize, bytes)
        .map_err(|_| wasmi::Error::new(format!("the buffer at {ptr} is outside the module's memory")))
}

fn read(caller: &Caller<'_, Host>, ptr: i32, len: i32) -> Result<Vec<u8>, wasmi::Error> {
    let memory = match caller.get_export("memory") {
        Some(Extern::Memory(m)) => m,
        _ => return Err(wasmi::Error::new("the module has no memory")),
    };
    let mut buf = vec![0; usize::try_from(len).map_err(|_| wasmi::Error::new(format!("negative length {len}")))?];
    memory
        .read(caller, ptr as u32 as usize, &mut buf)
        .map_err(|_| wasmi::Error::new(format!("{len} bytes at {ptr} are outside the module's memory")))?;
    Ok(buf)
}

fn read_str(caller: &Caller<'_, Host>, ptr: i32, len: i32) -> Result<String, wasmi::Error> {
    String::from_utf8(read(caller, ptr, len)?).map_err(|_| wasmi::Error::new("a string that is not UTF-8"))
}

fn len_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn abi_linker(engine: &Engine) -> Result<Linker<Host>, wasmi::Error> {
    let mut linker = Linker::<Host>::new(engine);
    linker.func_wrap(ABI_MODULE, "send", |mut caller: Caller<'_, Host>, ptr: i32, len: i32| {
        let content = read_str(&caller, ptr, len)?;
        caller.data_mut().outbox.push(ToHub::Send { content });
        Ok(())
    })?;
    linker.func_wrap(ABI_MODULE, "log", |mut caller: Caller<'_, Host>, ptr: i32, len: i32| {
        let text = read_str(&caller, ptr, len)?;
        if let Some(message) = text.strip_prefix("panic: ") {
            caller.data_mut().panic = Some(message.to_string());
        }
        caller.data_mut().outbox.push(ToHub::Log { text });
        Ok(())
    })?;
    linker.func_wrap(ABI_MODULE, "clock", |caller: Caller<'_, Host>| i64::from(caller.data().step))?;
    linker.func_wrap(ABI_MODULE, "take", |mut caller: Caller<'_, Host>, ptr: i32| {
        let pending = std::mem::take(&mut caller.data_mut().pending);
        let memory = match caller.get_export("memory") {
            Some(Extern::Memory(m)) => m,
            _ => return Err(wasmi::Error::new("the module has no memory")),
        };
        memory
            .write(&mut caller, ptr as u32 as usize, &pending)
            .map_err(|_| wasmi::Error::new(format!("the buffer at {ptr} is outside the module's memory")))
    })?;
    linker.func_wrap(ABI_MODULE, "ask_llm", |mut caller: Caller<'_, Host>, ptr: i32, len: i32| {
        #[derive(Deserialize)]
        struct Ask {
            prompt: String,
            system: Option<String>,
            max_tokens: Option<usize>,
        }
        let ask: Ask = serde_json::from_slice(&read(&caller, ptr, len)?).map_err(|e| {
            wasmi::Error::new(format!("ask_llm wants {{\"prompt\", \"system\"?, \"max_tokens\"?}}: {e}"))
        })?;
        let host = caller.data_mut();
        let mut request = host.llm.clone();
        request.prompt = ask.prompt;
        request.system = ask.system.unwrap_or(request.system);
        request.max_tokens = ask.max_tokens.unwrap_or(request.max_tokens).clamp(1, 4096);
        request.seed = turn_seed(host.seed, 0, host.llm_calls as u32);
        host.llm_calls += 1;
        host.outbox.push(ToHub::Llm(request));
        Err::<i32, _>(wasmi::Error::host(Suspend::Llm))
    })?;
    linker.func_wrap(
        ABI_MODULE,
        "tool",
        |mut caller: Caller<'_, Host>, name_ptr: i32, name_len: i32, args_ptr: i32, args_len: i32| {
            let name = read_str(&caller, name_ptr, name_len)?;
            let args = read_str(&caller, args_ptr, args_len)?;
            caller.data_mut().outbox.push(ToHub::Tool { name, args });
            Err::<i32, _>(wasmi::Error::host(Suspend::Tool))
        },
    )?;
    Ok(linker)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ModuleLimits = ModuleLimits { fuel: 1_000_000, memory_bytes: 1 << 20, time_budget_ms: 10_000 };

    fn wasm(body: &str) -> Vec<u8> {
        wat::parse_str(format!(
            r#"(module
                 (import "hearth" "send" (func $send (param i32 i32)))
                 (memory (export "memory") 1)
                 (data (i32.const 16) "hello")
                 (func (export "hearth_alloc") (param i32) (result i32) (i32.const 1024))
                 (func (export "hearth_receive") (param i32 i32) {body}))"#
        ))
        .unwrap()
    }

    fn agent(body: &str) -> ModuleAgent {
        let llm = LlmRequest { max_tokens: 8, top_p: 1.0, ..LlmRequest::default() };
        ModuleAgent::new(&wasm(body), LIMITS, llm).unwrap()
    }

    #[test]
    fn a_turn_reaches_the_hub_through_the_abi() {
        let mut a = agent("(call $send (i32.const 16) (i32.const 5))");
        assert_eq!(a.turn(0, 1, "{}"), Ok(TurnState::Done));
        assert_eq!(a.take_outbox(), [ToHub::Send { content: "hello".into() }]);
    }

    /// `ask_llm` suspends the module until the answer is handed in; it then reads the answer
    /// (`take`) and sends it on, in the same turn.
    #[test]
    fn a_call_to_the_llm_suspends_the_turn_until_the_answer() {
        let text = wat::parse_str(
            r#"(module
                 (import "hearth" "send" (func $send (param i32 i32)))
                 (import "hearth" "ask_llm" (func $ask (param i32 i32) (result i32)))
                 (import "hearth" "take" (func $take (param i32)))
                 (memory (export "memory") 1)
                 (data (i32.const 16) "{\"prompt\":\"hi\"}")
                 (func (export "hearth_alloc") (param i32) (result i32) (i32.const 1024))
                 (func (export "hearth_receive") (param i32 i32) (local $n i32)
                   (local.set $n (call $ask (i32.const 16) (i32.const 15)))
                   (call $take (i32.const 2048))
                   (call $send (i32.const 2048) (local.get $n))))"#,
        )
        .unwrap();
        let mut a = ModuleAgent::new(&text, LIMITS, LlmRequest::default()).unwrap();
        assert_eq!(a.turn(0, 1, "{}"), Ok(TurnState::Waiting));
        let out = a.take_outbox();
        assert!(matches!(&out[..], [ToHub::Llm(r)] if r.prompt == "hi"), "{out:?}");
        let answer = ToAgent::LlmReply {
            text: "hello there".into(),
            prompt_tokens: 1,
            completion_tokens: 2,
            finish_reason: hearth_api::generate::FinishReason::Stop,
        };
        assert_eq!(a.resume(answer), Ok(TurnState::Done));
        assert_eq!(a.take_outbox(), [ToHub::Send { content: "hello there".into() }]);
        // A tool's answer to an LLM call is a fault, not a guess.
        assert_eq!(a.turn(1, 1, "{}"), Ok(TurnState::Waiting));
        let f = a.resume(ToAgent::ToolReply { ok: true, output: "4".into() }).unwrap_err();
        assert!(f.detail.contains("the hub answered an LLM call with ToolReply"), "{f:?}");
    }

    #[test]
    fn faults_are_told_apart() {
        let mut a = agent("(loop $l (br $l))");
        let f = a.turn(0, 1, "{}").unwrap_err();
        assert_eq!(f.kind, FaultKind::TimeBudget, "{f:?}");
        assert!(f.detail.contains("1000000 instructions"), "{f:?}");

        let mut a = agent("(drop (memory.grow (i32.const 100)))");
        let f = a.turn(0, 1, "{}").unwrap_err();
        assert_eq!((f.kind, f.detail.as_str()), (FaultKind::Memory, "asked for more than its 1 MiB of memory"));

        let mut a = agent("(drop (i32.load (i32.const 70000)))");
        assert_eq!(a.turn(0, 1, "{}").unwrap_err().kind, FaultKind::Trap);

        // The host refuses a pointer outside the module's memory instead of reading it.
        let mut a = agent("(call $send (i32.const 65530) (i32.const 100))");
        let f = a.turn(0, 1, "{}").unwrap_err();
        assert!(f.detail.contains("outside the module's memory"), "{f:?}");
    }

    #[test]
    fn a_module_past_its_time_budget_stops_by_itself() {
        // Fuel for hours, 50 ms of wall clock: the module stops itself between two slices of
        // its instructions, soon after its budget, with the same words the hub would use.
        let limits = ModuleLimits { fuel: 1 << 40, memory_bytes: 1 << 20, time_budget_ms: 50 };
        let looping = wasm("(loop $l (br $l))");
        let mut a = ModuleAgent::new(&looping, limits, LlmRequest::default()).unwrap();
        let start = std::time::Instant::now();
        let f = a.turn(0, 1, "{}").unwrap_err();
        assert_eq!((f.kind, f.detail.as_str()), (FaultKind::TimeBudget, "ran past its time budget of 50 ms"));
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(50) && took < Duration::from_secs(5), "{took:?}");
        // A turn of many slices that ends within its budgets runs whole.
        let limits = ModuleLimits { fuel: 100_000_000, time_budget_ms: 10_000, ..limits };
        let counting = wasm(
            "(local $i i32) (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1))) \
             (br_if $l (i32.lt_u (local.get $i) (i32.const 3000000)))) (call $send (i32.const 16) (i32.const 5))",
        );
        let mut a = ModuleAgent::new(&counting, limits, LlmRequest::default()).unwrap();
        assert_eq!(a.turn(0, 1, "{}"), Ok(TurnState::Done));
        assert_eq!(a.take_outbox(), [ToHub::Send { content: "hello".into() }]);
    }

    #[test]
    fn modules_beyond_the_abi_are_refused() {
        let refused = |text: &str| ModuleAgent::check(&wat::parse_str(text).unwrap()).unwrap_err();
        let e = refused(r#"(module (import "env" "fetch" (func)) (memory (export "memory") 1))"#);
        assert_eq!(e, ModuleError::ForbiddenImport { module: "env".into(), name: "fetch".into() });
        assert!(e.to_string().contains("only hearth.{send, ask_llm, tool, take, log, clock}"), "{e}");
        let e = refused(r#"(module (import "hearth" "exec" (func)))"#);
        assert!(matches!(e, ModuleError::ForbiddenImport { ref name, .. } if name == "exec"), "{e}");
        let e = refused(r#"(module (import "hearth" "memory" (memory 1)))"#);
        assert!(matches!(e, ModuleError::ForbiddenImport { .. }), "{e}");
        let e = refused(r#"(module (memory (export "memory") 1))"#);
        assert_eq!(e, ModuleError::MissingExport("hearth_alloc".into()));
        let e = ModuleAgent::check(b"\0asm\x01\0\0\0garbage").unwrap_err();
        assert!(matches!(e, ModuleError::Invalid(_)), "{e}");
        ModuleAgent::check(&wasm("")).unwrap();
    }
}
