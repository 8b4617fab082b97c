//! The bus between the hub and its agents.
//!
//! Two transports with one API ([`HubPort`], [`AgentPort`]) and one meaning: per agent, an
//! inbound and an outbound queue of byte messages, each delivered once and in order, with
//! blocking receive (and send, when a queue is full) and an optional timeout.
//!
//! - [`SharedBus`]: rings in one region of shared words (a `SharedArrayBuffer` when the region
//!   lives in shared wasm memory), Atomics wait/notify, and an arena for payloads too large for
//!   a ring frame, which travel as handles. Natively the same code runs over threads.
//! - [`ChannelBus`]: message passing, for engines without shared memory (`postMessage` there,
//!   `std::sync::mpsc` natively).
//!
//! A message is visible to its receiver only once it is complete: a sender that dies mid-send
//! leaves nothing behind (see [`ring`]).

mod arena;
mod ring;
mod wait;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use web_time::Instant;

use arena::{Arena, BLOCK_WORDS};
use ring::{HEADER_WORDS, Pop, Push, Ring};
use wait::Waiters;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    #[error("timed out after {0:?} waiting on the bus")]
    Timeout(Duration),
    #[error("the other end of agent {agent}'s queue is closed")]
    Closed { agent: usize },
    #[error("a message of {len} bytes is larger than the bus allows ({max} bytes)")]
    TooLarge { len: usize, max: usize },
    #[error("no agent {agent}: the bus has {agents}")]
    NoSuchAgent { agent: usize, agents: usize },
    #[error("the memory given for a shared bus does not fit it: {0}")]
    Region(String),
}

/// The hub's end: one queue pair per agent.
pub trait HubPort: Send + Sync {
    fn agents(&self) -> usize;
    fn send(&self, agent: usize, msg: &[u8], timeout: Option<Duration>) -> Result<(), BusError>;
    /// The next message from any agent, with the sender's index.
    fn recv(&self, timeout: Option<Duration>) -> Result<(usize, Vec<u8>), BusError>;
    /// Cuts `agent` off (it crashed): its queues close, and what is in them either way — what
    /// it had not read, and what it sent that the hub had not read — is dropped: its turn is
    /// void, and a restarted agent begins with empty queues.
    fn disconnect(&self, agent: usize);
    /// Fresh, empty queues for `agent` (a restart); the old agent end must be gone.
    fn reconnect(&self, agent: usize) -> Result<Box<dyn AgentPort>, BusError>;
    /// Gives back what a disconnected `agent`'s queues hold outside any message: the shared
    /// arena's blocks of a send or a receive its worker died in the middle of. Only once no
    /// worker that had its end can run any more (a stuck one left running may still write).
    fn reclaim(&self, _agent: usize) {}
}

/// An agent's end.
pub trait AgentPort: Send {
    fn send(&self, msg: &[u8], timeout: Option<Duration>) -> Result<(), BusError>;
    fn recv(&self, timeout: Option<Duration>) -> Result<Vec<u8>, BusError>;
}

// ---------------------------------------------------------------------------------------------
// Shared memory.

const MAGIC: u32 = u32::from_le_bytes(*b"HBUS");
const H_MAGIC: usize = 0;
const H_DOORBELL: usize = 1;
const H_ARENA_FREED: usize = 2;
/// The shape of the bus (agents, ring words, arena blocks), so that a second process that
/// maps the same region checks it is the bus it expects.
const H_SHAPE: [usize; 3] = [3, 4, 5];
const GLOBAL_WORDS: usize = 8;
/// A frame's first word: the payload's length in bytes (low 24 bits), the generation of the
/// agent that sent it (7 bits; 0 from the hub), and whether the payload is an arena handle.
const HANDLE: u32 = 1 << 31;
const LEN_MASK: u32 = (1 << 24) - 1;
const GENERATION_SHIFT: u32 = 24;
const GENERATIONS: u32 = 1 << 7;

/// Sizes of a shared bus.
#[derive(Clone, Copy, Debug)]
pub struct SharedBusConfig {
    /// Bytes of data in each ring (rounded up to a power of two, at least 256).
    pub ring_bytes: usize,
    /// Bytes of the arena for large payloads.
    pub arena_bytes: usize,
}

impl Default for SharedBusConfig {
    fn default() -> Self {
        Self { ring_bytes: 16 << 10, arena_bytes: 1 << 20 }
    }
}

/// The words of a region: the bus's own, or memory the caller provides ([`SharedBus::over`]).
enum Words {
    Owned(Box<[AtomicU32]>),
    Provided(&'static [AtomicU32]),
}

impl std::ops::Deref for Words {
    type Target = [AtomicU32];
    fn deref(&self) -> &[AtomicU32] {
        match self {
            Words::Owned(w) => w,
            Words::Provided(w) => w,
        }
    }
}

/// Layout: global words, one owner word per arena block, two rings per agent, arena data.
struct Region {
    words: Words,
    waiters: Waiters,
    agents: usize,
    ring_words: usize,
    blocks: usize,
}

impl Region {
    /// The words a region of this shape takes.
    fn size(agents: usize, ring_words: usize, blocks: usize) -> usize {
        GLOBAL_WORDS + blocks + 2 * agents * ring_words + blocks * BLOCK_WORDS
    }

    fn ring(&self, agent: usize, to_hub: bool) -> Ring<'_> {
        let start = GLOBAL_WORDS + self.blocks + (2 * agent + usize::from(to_hub)) * self.ring_words;
        Ring::new(&self.words[start..start + self.ring_words])
    }

    fn arena(&self) -> Arena<'_> {
        let data = GLOBAL_WORDS + self.blocks + 2 * self.agents * self.ring_words;
        Arena { owners: &self.words[GLOBAL_WORDS..GLOBAL_WORDS + self.blocks], data: &self.words[data..] }
    }

    fn max_message(&self) -> usize {
        self.blocks * BLOCK_WORDS * 4
    }

    /// Writes `msg` into `ring` as one frame (inline, or as an arena handle), blocking while
    /// full; `generation` is the sending agent's (0 from the hub).
    fn send(
        &self,
        agent: usize,
        ring: Ring<'_>,
        generation: u32,
        msg: &[u8],
        timeout: Option<Duration>,
    ) -> Result<(), BusError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let body = to_words(msg);
        let inline = body.len() <= ring.max_body_words() / 4;
        let max = if inline { LEN_MASK as usize } else { self.max_message().min(LEN_MASK as usize) };
        if msg.len() > max {
            return Err(BusError::TooLarge { len: msg.len(), max });
        }
        let stamp = generation << GENERATION_SHIFT;
        let (len_word, frame): (u32, Vec<u32>) = if inline {
            (stamp | msg.len() as u32, body)
        } else {
            let arena = self.arena();
            let first = loop {
                let freed = self.words[H_ARENA_FREED].load(Ordering::Acquire);
                if let Some(first) = arena.alloc(agent, body.len()) {
                    break first;
                }
                self.wait(&self.words[H_ARENA_FREED], freed, deadline, timeout)?;
            };
            arena.write(first, &body);
            (HANDLE | stamp | msg.len() as u32, vec![first as u32])
        };
        loop {
            match ring.push(len_word, &frame) {
                Push::Done => {
                    self.waiters.wake(ring.head_word());
                    self.words[H_DOORBELL].fetch_add(1, Ordering::Release);
                    self.waiters.wake(&self.words[H_DOORBELL]);
                    return Ok(());
                }
                Push::Closed => {
                    if len_word & HANDLE != 0 {
                        self.free(frame[0] as usize, (len_word & LEN_MASK) as usize);
                    }
                    return Err(BusError::Closed { agent });
                }
                Push::Full { tail } => {
                    if let Err(e) = self.wait(ring.tail_word(), tail, deadline, timeout) {
                        // The payload never made it into the ring: give its arena run back.
                        if len_word & HANDLE != 0 {
                            self.free(frame[0] as usize, (len_word & LEN_MASK) as usize);
                        }
                        return Err(e);
                    }
                }
            }
        }
    }

    fn free(&self, first: usize, len: usize) {
        self.arena().free(first, len.div_ceil(4));
        self.words[H_ARENA_FREED].fetch_add(1, Ordering::Release);
        self.waiters.wake(&self.words[H_ARENA_FREED]);
    }

    /// Takes one message from `ring` if there is one; `Err(head)` to wait on when empty. With
    /// `generation`, frames an agent of another generation sent (a worker cut off and replaced,
    /// still running) are dropped unread.
    fn try_recv(
        &self,
        agent: usize,
        ring: Ring<'_>,
        generation: Option<u32>,
    ) -> Result<Result<Vec<u8>, u32>, BusError> {
        let body_words = |first: u32| if first & HANDLE != 0 { 1 } else { ((first & LEN_MASK) as usize).div_ceil(4) };
        loop {
            match ring.pop(body_words) {
                Pop::Frame(frame) => {
                    self.waiters.wake(ring.tail_word());
                    let len = (frame[0] & LEN_MASK) as usize;
                    let sender = (frame[0] & !HANDLE) >> GENERATION_SHIFT;
                    let words = if frame[0] & HANDLE != 0 {
                        let first = frame[1] as usize;
                        let words = self.arena().read(first, len.div_ceil(4));
                        self.free(first, len);
                        words
                    } else {
                        frame[1..].to_vec()
                    };
                    if generation.is_some_and(|g| g != sender) {
                        continue;
                    }
                    return Ok(Ok(from_words(&words, len)));
                }
                Pop::Empty { head } => return Ok(Err(head)),
                Pop::Closed => return Err(BusError::Closed { agent }),
            }
        }
    }

    fn wait(
        &self,
        word: &AtomicU32,
        seen: u32,
        deadline: Option<Instant>,
        timeout: Option<Duration>,
    ) -> Result<(), BusError> {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left.is_some_and(|l| l.is_zero()) || !self.waiters.wait(word, seen, left) {
            return Err(BusError::Timeout(timeout.unwrap_or_default()));
        }
        Ok(())
    }
}

fn to_words(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(w)
        })
        .collect()
}

fn from_words(words: &[u32], len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    bytes.truncate(len);
    bytes
}

/// The shared-memory transport; see the module docs.
pub struct SharedBus {
    region: Arc<Region>,
    next: AtomicU32,
}

impl SharedBus {
    /// A bus for `agents` agents and its agent ends, in agent order.
    pub fn new(agents: usize, config: SharedBusConfig) -> (Self, Vec<Box<dyn AgentPort>>) {
        let (ring_words, blocks) = Self::shape(config);
        let size = Region::size(agents, ring_words, blocks);
        let words = Words::Owned((0..size).map(|_| AtomicU32::new(0)).collect());
        Self::init(&words, agents, ring_words, blocks);
        Self::with(Region { words, waiters: Waiters::default(), agents, ring_words, blocks })
    }

    /// The words [`SharedBus::over`] needs for this bus.
    pub fn region_words(agents: usize, config: SharedBusConfig) -> usize {
        let (ring_words, blocks) = Self::shape(config);
        Region::size(agents, ring_words, blocks)
    }

    /// A bus in memory the caller provides: zeroed (a new bus), or holding a bus of the same
    /// shape that another party set up, such as a file mapping shared with another process.
    /// Waking a waiter is local to a process; across processes, waits end by their timeouts.
    pub fn over(
        words: &'static [AtomicU32],
        agents: usize,
        config: SharedBusConfig,
    ) -> Result<(Self, Vec<Box<dyn AgentPort>>), BusError> {
        let (ring_words, blocks) = Self::shape(config);
        let needed = Region::size(agents, ring_words, blocks);
        if words.len() < needed {
            return Err(BusError::Region(format!("{} words where this bus needs {needed}", words.len())));
        }
        match words[H_MAGIC].load(Ordering::Acquire) {
            0 => Self::init(words, agents, ring_words, blocks),
            MAGIC => {
                let shape = H_SHAPE.map(|i| words[i].load(Ordering::Relaxed) as usize);
                if shape != [agents, ring_words, blocks] {
                    return Err(BusError::Region(format!(
                        "it holds a bus of (agents, ring words, arena blocks) {shape:?}, not {:?}",
                        [agents, ring_words, blocks]
                    )));
                }
            }
            other => return Err(BusError::Region(format!("its first word is {other:#x}, not a bus's"))),
        }
        let words = Words::Provided(words);
        Ok(Self::with(Region { words, waiters: Waiters::default(), agents, ring_words, blocks }))
    }

    fn shape(config: SharedBusConfig) -> (usize, usize) {
        let ring_bytes = config.ring_bytes.max(256).next_power_of_two();
        (HEADER_WORDS + ring_bytes / 4, config.arena_bytes.div_ceil(BLOCK_WORDS * 4).max(1))
    }

    fn init(words: &[AtomicU32], agents: usize, ring_words: usize, blocks: usize) {
        for (i, v) in H_SHAPE.into_iter().zip([agents, ring_words, blocks]) {
            words[i].store(v as u32, Ordering::Relaxed);
        }
        words[H_MAGIC].store(MAGIC, Ordering::Release);
    }

    fn with(region: Region) -> (Self, Vec<Box<dyn AgentPort>>) {
        let region = Arc::new(region);
        let ports = (0..region.agents)
            .map(|agent| {
                let generation = region.ring(agent, true).generation();
                Box::new(SharedAgent { region: region.clone(), agent, generation }) as Box<dyn AgentPort>
            })
            .collect();
        (Self { region, next: AtomicU32::new(0) }, ports)
    }

    /// Free bytes in the arena (all of it when no large message is in flight).
    pub fn arena_free_bytes(&self) -> usize {
        self.region.arena().free_blocks() * BLOCK_WORDS * 4
    }

    fn check(&self, agent: usize) -> Result<(), BusError> {
        if agent < self.region.agents {
            Ok(())
        } else {
            Err(BusError::NoSuchAgent { agent, agents: self.region.agents })
        }
    }
}

impl HubPort for SharedBus {
    fn agents(&self) -> usize {
        self.region.agents
    }

    fn send(&self, agent: usize, msg: &[u8], timeout: Option<Duration>) -> Result<(), BusError> {
        self.check(agent)?;
        self.region.send(agent, self.region.ring(agent, false), 0, msg, timeout)
    }

    fn recv(&self, timeout: Option<Duration>) -> Result<(usize, Vec<u8>), BusError> {
        let r = &self.region;
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let bell = r.words[H_DOORBELL].load(Ordering::Acquire);
            // Start where the last receive stopped so that no agent starves the others.
            let start = self.next.load(Ordering::Relaxed) as usize;
            let mut open = 0;
            for i in 0..r.agents {
                let agent = (start + i) % r.agents;
                let ring = r.ring(agent, true);
                // A frame a cut-off agent publishes late stays unread (dropped on reconnect).
                if ring.is_closed() {
                    continue;
                }
                match r.try_recv(agent, ring, Some(ring.generation())) {
                    Ok(Ok(msg)) => {
                        self.next.store(((agent + 1) % r.agents) as u32, Ordering::Relaxed);
                        return Ok((agent, msg));
                    }
                    Ok(Err(_)) => open += 1,
                    Err(_) => {}
                }
            }
            if open == 0 {
                return Err(BusError::Closed { agent: usize::MAX });
            }
            r.wait(&r.words[H_DOORBELL], bell, deadline, timeout)?;
        }
    }

    fn disconnect(&self, agent: usize) {
        if agent < self.region.agents {
            for to_hub in [false, true] {
                self.region.ring(agent, to_hub).close();
                self.region.waiters.wake(self.region.ring(agent, to_hub).head_word());
                self.region.waiters.wake(self.region.ring(agent, to_hub).tail_word());
            }
            // The hub is the only reader of the agent's outbound ring: drop what is there now,
            // freeing its arena runs. (Its inbound ring may still have a live reader, a stuck
            // agent: that one is drained at reconnect, once the agent is gone.)
            let ring = self.region.ring(agent, true);
            while let Ok(Ok(_)) = self.region.try_recv(agent, ring, None) {}
        }
    }

    fn reconnect(&self, agent: usize) -> Result<Box<dyn AgentPort>, BusError> {
        self.check(agent)?;
        // A new generation first: whatever an old worker that still runs sends from now on is
        // refused or, if it was already past that check, dropped unread.
        let generation = (self.region.ring(agent, true).generation() + 1) % GENERATIONS;
        self.region.ring(agent, true).set_generation(generation);
        for to_hub in [false, true] {
            let ring = self.region.ring(agent, to_hub);
            // Drop what the old agent left unread (freeing its arena runs), then reopen.
            while let Ok(Ok(_)) = self.region.try_recv(agent, ring, None) {}
            ring.reopen();
        }
        Ok(Box::new(SharedAgent { region: self.region.clone(), agent, generation }))
    }

    fn reclaim(&self, agent: usize) {
        if agent >= self.region.agents || !self.region.ring(agent, true).is_closed() {
            return;
        }
        // First the runs that published messages hold (freed as they are read), then what is
        // left for this agent's queues: runs it took and never published, or read and never
        // freed, because it died in between.
        for to_hub in [false, true] {
            let ring = self.region.ring(agent, to_hub);
            while let Ok(Ok(_)) = self.region.try_recv(agent, ring, None) {}
        }
        self.region.arena().reclaim(agent);
        self.region.words[H_ARENA_FREED].fetch_add(1, Ordering::Release);
        self.region.waiters.wake(&self.region.words[H_ARENA_FREED]);
    }
}

struct SharedAgent {
    region: Arc<Region>,
    agent: usize,
    /// The generation of the agent's queues this end belongs to: once the agent is restarted,
    /// this end is closed for good.
    generation: u32,
}

impl SharedAgent {
    fn check(&self) -> Result<(), BusError> {
        if self.region.ring(self.agent, true).generation() == self.generation {
            Ok(())
        } else {
            Err(BusError::Closed { agent: self.agent })
        }
    }
}

impl AgentPort for SharedAgent {
    fn send(&self, msg: &[u8], timeout: Option<Duration>) -> Result<(), BusError> {
        self.check()?;
        self.region.send(self.agent, self.region.ring(self.agent, true), self.generation, msg, timeout)
    }

    fn recv(&self, timeout: Option<Duration>) -> Result<Vec<u8>, BusError> {
        let r = &self.region;
        let deadline = timeout.map(|t| Instant::now() + t);
        let ring = r.ring(self.agent, false);
        loop {
            self.check()?;
            match r.try_recv(self.agent, ring, None)? {
                Ok(msg) => return Ok(msg),
                Err(head) => r.wait(ring.head_word(), head, deadline, timeout)?,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Message passing.

/// The message-passing transport; see the module docs.
pub struct ChannelBus {
    inbox: Mutex<mpsc::Receiver<(usize, u32, Vec<u8>)>>,
    to_hub: mpsc::Sender<(usize, u32, Vec<u8>)>,
    agents: Mutex<Vec<ChannelLink>>,
}

struct ChannelLink {
    to_agent: mpsc::Sender<Vec<u8>>,
    /// Bumped on reconnect; messages of an older generation are from a dead agent.
    generation: u32,
    closed: Arc<AtomicBool>,
}

impl ChannelBus {
    pub fn new(agents: usize) -> (Self, Vec<Box<dyn AgentPort>>) {
        let (to_hub, inbox) = mpsc::channel();
        let mut links = Vec::with_capacity(agents);
        let mut ports = Vec::with_capacity(agents);
        for agent in 0..agents {
            let (link, port) = Self::link(agent, 0, &to_hub);
            links.push(link);
            ports.push(port);
        }
        (Self { inbox: Mutex::new(inbox), to_hub, agents: Mutex::new(links) }, ports)
    }

    fn link(
        agent: usize,
        generation: u32,
        to_hub: &mpsc::Sender<(usize, u32, Vec<u8>)>,
    ) -> (ChannelLink, Box<dyn AgentPort>) {
        let (to_agent, inbox) = mpsc::channel();
        let closed = Arc::new(AtomicBool::new(false));
        let port = ChannelAgent { agent, generation, inbox, to_hub: to_hub.clone(), closed: closed.clone() };
        (ChannelLink { to_agent, generation, closed }, Box::new(port))
    }

    fn links(&self) -> std::sync::MutexGuard<'_, Vec<ChannelLink>> {
        self.agents.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl HubPort for ChannelBus {
    fn agents(&self) -> usize {
        self.links().len()
    }

    fn send(&self, agent: usize, msg: &[u8], _timeout: Option<Duration>) -> Result<(), BusError> {
        let links = self.links();
        let agents = links.len();
        let link = links.get(agent).ok_or(BusError::NoSuchAgent { agent, agents })?;
        if link.closed.load(Ordering::Acquire) {
            return Err(BusError::Closed { agent });
        }
        link.to_agent.send(msg.to_vec()).map_err(|_| BusError::Closed { agent })
    }

    fn recv(&self, timeout: Option<Duration>) -> Result<(usize, Vec<u8>), BusError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let (agent, generation, msg) = match deadline {
                None => inbox.recv().map_err(|_| BusError::Closed { agent: usize::MAX })?,
                Some(d) => inbox.recv_timeout(d.saturating_duration_since(Instant::now())).map_err(|e| match e {
                    mpsc::RecvTimeoutError::Timeout => BusError::Timeout(timeout.unwrap_or_default()),
                    mpsc::RecvTimeoutError::Disconnected => BusError::Closed { agent: usize::MAX },
                })?,
            };
            let links = self.links();
            if links.get(agent).is_some_and(|l| l.generation == generation && !l.closed.load(Ordering::Acquire)) {
                return Ok((agent, msg));
            }
        }
    }

    fn disconnect(&self, agent: usize) {
        if let Some(link) = self.links().get_mut(agent) {
            link.closed.store(true, Ordering::Release);
            // Dropping the sender ends the agent's receive.
            link.to_agent = mpsc::channel().0;
        }
    }

    fn reconnect(&self, agent: usize) -> Result<Box<dyn AgentPort>, BusError> {
        let mut links = self.links();
        let agents = links.len();
        let old = links.get_mut(agent).ok_or(BusError::NoSuchAgent { agent, agents })?;
        old.closed.store(true, Ordering::Release);
        let (link, port) = Self::link(agent, old.generation + 1, &self.to_hub);
        *old = link;
        Ok(port)
    }
}

struct ChannelAgent {
    agent: usize,
    generation: u32,
    inbox: mpsc::Receiver<Vec<u8>>,
    to_hub: mpsc::Sender<(usize, u32, Vec<u8>)>,
    closed: Arc<AtomicBool>,
}

impl AgentPort for ChannelAgent {
    fn send(&self, msg: &[u8], _timeout: Option<Duration>) -> Result<(), BusError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(BusError::Closed { agent: self.agent });
        }
        self.to_hub
            .send((self.agent, self.generation, msg.to_vec()))
            .map_err(|_| BusError::Closed { agent: self.agent })
    }

    fn recv(&self, timeout: Option<Duration>) -> Result<Vec<u8>, BusError> {
        let closed = |_| BusError::Closed { agent: self.agent };
        match timeout {
            None => self.inbox.recv().map_err(closed),
            Some(t) => self.inbox.recv_timeout(t).map_err(|e| match e {
                mpsc::RecvTimeoutError::Timeout => BusError::Timeout(t),
                mpsc::RecvTimeoutError::Disconnected => BusError::Closed { agent: self.agent },
            }),
        }
    }
}

#[cfg(test)]
mod tests;
