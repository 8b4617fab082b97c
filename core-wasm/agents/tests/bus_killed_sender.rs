//! An agent killed in the middle of a send. The agent is a second process on the same shared
//! bus (a file both processes map), killed with SIGKILL wherever it is: no torn message ever
//! reaches the hub, the other agent's messages keep arriving, every one of them, in order, and
//! once the dead agent's queues are reclaimed the arena is whole again.
//!
//! The child process is this test binary again, running this same test with
//! `HEARTH_BUS_REGION` set: it then sends for ever instead. Wake-ups do not cross processes,
//! so both sides wait with short timeouts.
#![cfg(unix)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hearth_agents::bus::{BusError, HubPort, SharedBus, SharedBusConfig};

const TEST: &str = "an_agent_killed_in_the_middle_of_a_send_leaves_no_torn_message_and_no_lost_block";
const AGENTS: usize = 2;
const CONFIG: SharedBusConfig = SharedBusConfig { ring_bytes: 256, arena_bytes: 256 << 10 };
const POLL: Option<Duration> = Some(Duration::from_millis(1));
const HEADER: usize = 9;

/// A message that shows if it is torn: agent, sequence number, body length, then a body
/// every byte of which follows from the three.
fn message(agent: u8, seq: u32, body: usize) -> Vec<u8> {
    let mut m = vec![agent];
    m.extend(seq.to_le_bytes());
    m.extend((body as u32).to_le_bytes());
    m.extend((0..body).map(|i| (seq as usize * 31 + i * 7 + agent as usize) as u8));
    m
}

/// The (agent, sequence number) of a whole message; panics on a torn one.
fn check(from: usize, m: &[u8]) -> (u8, u32) {
    assert!(m.len() >= HEADER, "a message of {} bytes has no header", m.len());
    let seq = u32::from_le_bytes(m[1..5].try_into().unwrap());
    let body = u32::from_le_bytes(m[5..9].try_into().unwrap()) as usize;
    assert_eq!((m[0] as usize, m.len()), (from, HEADER + body), "message {seq} from agent {from} is torn");
    assert!(m == message(m[0], seq, body), "message {seq} from agent {from} is torn");
    (m[0], seq)
}

/// Body lengths from a few bytes (inline in the ring) to a few KiB (arena handles).
fn body_len(seq: u32) -> usize {
    [3, 40, 200, 1500, 4000, 700][seq as usize % 6] + seq as usize % 13
}

/// The child: sends agent 0's messages from `HEARTH_BUS_FROM` on until it is killed. In
/// `block` mode every message goes through the arena and a full ring is waited on for ever.
fn sender(region: &str) -> ! {
    let file = std::fs::OpenOptions::new().read(true).write(true).open(region).expect("open the region");
    let map = Box::leak(Box::new(unsafe { memmap2::MmapMut::map_mut(&file) }.expect("map the region")));
    let words = words(map);
    let (_hub, mut ports) = SharedBus::over(words, AGENTS, CONFIG).expect("attach to the bus");
    let port = ports.swap_remove(0);
    let block = std::env::var("HEARTH_BUS_MODE").as_deref() == Ok("block");
    let mut seq: u32 = std::env::var("HEARTH_BUS_FROM").unwrap().parse().unwrap();
    loop {
        let msg = message(0, seq, if block { 2000 } else { body_len(seq) });
        match port.send(&msg, if block { None } else { POLL }) {
            Ok(()) => seq += 1,
            Err(BusError::Timeout(_)) => {}
            Err(e) => panic!("agent 0 cannot send: {e}"),
        }
    }
}

fn words(map: &'static mut memmap2::MmapMut) -> &'static [AtomicU32] {
    let len = map.len() / 4;
    // SAFETY: the mapping is page-aligned, lives for ever (leaked), and is only ever accessed
    // through these atomics, in this process and the other.
    unsafe { std::slice::from_raw_parts(map.as_mut_ptr().cast::<AtomicU32>(), len) }
}

fn spawn(region: &std::path::Path, mode: &str, from: u32) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env("HEARTH_BUS_REGION", region)
        .env("HEARTH_BUS_MODE", mode)
        .env("HEARTH_BUS_FROM", from.to_string())
        .stdout(Stdio::null())
        .spawn()
        .expect("start the sending process")
}

fn kill(child: &mut Child) {
    assert!(child.try_wait().unwrap().is_none(), "the sending process died by itself");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// What the hub has read, checked as it arrives.
struct Reader<'a> {
    hub: &'a SharedBus,
    /// The next sequence number expected from each agent.
    next: [u32; AGENTS],
}

impl Reader<'_> {
    /// Reads one message if one comes within a millisecond.
    fn read(&mut self) -> Option<usize> {
        match self.hub.recv(POLL) {
            Ok((from, m)) => {
                let (_, seq) = check(from, &m);
                assert_eq!(seq, self.next[from], "agent {from}'s messages skip or repeat");
                self.next[from] += 1;
                Some(from)
            }
            Err(BusError::Timeout(_)) => None,
            Err(e) => panic!("the hub cannot read: {e}"),
        }
    }

    /// Reads until agent 0 has sent `n` more messages.
    fn read_from_zero(&mut self, n: u32) {
        let (want, deadline) = (self.next[0] + n, Instant::now() + Duration::from_secs(60));
        while self.next[0] < want {
            assert!(Instant::now() < deadline, "agent 0 stopped sending at message {}", self.next[0]);
            self.read();
        }
    }
}

#[test]
fn an_agent_killed_in_the_middle_of_a_send_leaves_no_torn_message_and_no_lost_block() {
    if let Ok(region) = std::env::var("HEARTH_BUS_REGION") {
        sender(&region);
    }
    let dir = tempfile::tempdir().unwrap();
    let region = dir.path().join("bus");
    let file = std::fs::File::create_new(&region).unwrap();
    file.set_len(4 * SharedBus::region_words(AGENTS, CONFIG) as u64).unwrap();
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&region).unwrap();
    let map = Box::leak(Box::new(unsafe { memmap2::MmapMut::map_mut(&file) }.unwrap()));
    let (hub, mut ports) = SharedBus::over(words(map), AGENTS, CONFIG).unwrap();
    let whole = hub.arena_free_bytes();
    let mut reader = Reader { hub: &hub, next: [0; AGENTS] };

    // 1. Killed with a payload written to the arena but not yet published: the agent blocks on
    //    its full ring (the hub reads nothing) with its next message's run taken and filled.
    //    A 256-byte ring holds 32 handle frames of 8 bytes; each payload takes two 1 KiB blocks.
    //    With 33 runs taken, 32 are published and the 33rd is in the middle of its send.
    let mut child = spawn(&region, "block", 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while whole - hub.arena_free_bytes() < 33 * 2048 {
        assert!(Instant::now() < deadline, "agent 0 never filled its ring");
        std::thread::sleep(Duration::from_millis(5));
    }
    kill(&mut child);
    while reader.read().is_some() {}
    assert_eq!(reader.next[0], 32, "every published message is read, whole");
    assert_eq!(whole - hub.arena_free_bytes(), 2048, "only the unpublished message's run is held");
    hub.disconnect(0);
    hub.reclaim(0);
    assert_eq!(hub.arena_free_bytes(), whole, "the dead agent's run is given back");

    // 2. Killed wherever it happens to be, again and again, while agent 1 (a thread here)
    //    sends all along.
    let stop = Arc::new(AtomicBool::new(false));
    let other = {
        let (stop, port) = (stop.clone(), ports.pop().unwrap());
        std::thread::spawn(move || {
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) {
                match port.send(&message(1, seq, body_len(seq)), POLL) {
                    Ok(()) => seq += 1,
                    Err(BusError::Timeout(_)) => {}
                    Err(e) => panic!("agent 1 cannot send: {e}"),
                }
            }
            seq
        })
    };
    let mut random = 0x9E37_79B9_u32;
    let rounds = 25;
    for round in 1..=rounds {
        drop(hub.reconnect(0).unwrap());
        let from = round * 1_000_000;
        reader.next[0] = from;
        let mut child = spawn(&region, "random", from);
        random ^= random << 13;
        random ^= random >> 17;
        random ^= random << 5;
        reader.read_from_zero(1 + random % 40);
        kill(&mut child);
        // What it published before it died is still whole.
        while reader.read().is_some() {}
        hub.disconnect(0);
        hub.reclaim(0);
    }
    stop.store(true, Ordering::Relaxed);
    let sent = other.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while reader.next[1] < sent {
        assert!(Instant::now() < deadline, "agent 1's message {} of {sent} never arrived", reader.next[1]);
        reader.read();
    }
    assert_eq!(hub.arena_free_bytes(), whole, "no arena block is lost to the {rounds} killed agents");
    eprintln!("{rounds} agents killed mid-run; agent 1 sent {sent} messages, all read whole and in order");
}
