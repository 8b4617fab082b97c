use std::thread;

use super::*;

type Made = (Box<dyn HubPort>, Vec<Box<dyn AgentPort>>);

fn shared(agents: usize) -> Made {
    let (hub, ports) = SharedBus::new(agents, SharedBusConfig { ring_bytes: 1024, arena_bytes: 64 << 10 });
    (Box::new(hub), ports)
}

fn channels(agents: usize) -> Made {
    let (hub, ports) = ChannelBus::new(agents);
    (Box::new(hub), ports)
}

const SHORT: Option<Duration> = Some(Duration::from_millis(50));
const LONG: Option<Duration> = Some(Duration::from_secs(20));

/// A deterministic jitter so that threads interleave differently message to message.
fn jitter(i: usize) {
    if i % 7 == 3 {
        thread::sleep(Duration::from_micros((i as u64 * 37) % 300));
    }
}

/// Every agent sends `n` numbered messages of varied sizes (some large enough for the arena)
/// while the hub echoes each back; everything arrives once, in each sender's order.
fn many_senders_in_order(make: fn(usize) -> Made) {
    let (hub, ports) = make(4);
    let n = 300;
    let body = |agent: usize, i: usize| {
        let len = [3, 40, 1000, 5000][(agent + i) % 4];
        let mut m = format!("{agent}:{i}:").into_bytes();
        m.resize(len.max(m.len()), b'a' + (i % 26) as u8);
        m
    };
    let workers: Vec<_> = ports
        .into_iter()
        .enumerate()
        .map(|(agent, port)| {
            thread::spawn(move || {
                for i in 0..n {
                    jitter(i + agent);
                    port.send(&body(agent, i), LONG).unwrap();
                    assert_eq!(port.recv(LONG).unwrap(), body(agent, i), "the echo of {agent}:{i}");
                }
            })
        })
        .collect();
    let mut next = [0usize; 4];
    for _ in 0..4 * n {
        let (agent, msg) = hub.recv(LONG).unwrap();
        assert_eq!(msg, body(agent, next[agent]), "agent {agent}'s messages arrive in order");
        next[agent] += 1;
        hub.send(agent, &msg, LONG).unwrap();
    }
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(next, [n; 4]);
    assert!(matches!(hub.recv(SHORT), Err(BusError::Timeout(_))), "nothing more");
}

#[test]
fn shared_bus_delivers_every_message_in_order() {
    many_senders_in_order(shared);
}

#[test]
fn channel_bus_delivers_every_message_in_order() {
    many_senders_in_order(channels);
}

fn timeouts_disconnect_and_reconnect(make: fn(usize) -> Made) {
    let (hub, mut ports) = make(2);
    assert_eq!(hub.agents(), 2);
    assert!(matches!(ports[0].recv(SHORT), Err(BusError::Timeout(_))));
    assert!(matches!(hub.recv(SHORT), Err(BusError::Timeout(_))));
    assert!(matches!(hub.send(5, b"x", SHORT), Err(BusError::NoSuchAgent { agent: 5, agents: 2 })));

    // A receiver blocked in recv wakes when the message comes.
    let port = ports.remove(1);
    let waiter = thread::spawn(move || (port.recv(LONG), port));
    thread::sleep(Duration::from_millis(30));
    hub.send(1, b"late", LONG).unwrap();
    let (got, port1) = waiter.join().unwrap();
    assert_eq!(got.unwrap(), b"late");

    // Agent 1 crashes: the hub cuts it off; what it had not read is gone; agent 0 carries on.
    hub.send(1, b"never read", LONG).unwrap();
    hub.disconnect(1);
    assert!(matches!(port1.send(b"from the dead", SHORT), Err(BusError::Closed { agent: 1 })));
    ports[0].send(b"still here", LONG).unwrap();
    assert_eq!(hub.recv(LONG).unwrap(), (0, b"still here".to_vec()));
    assert!(matches!(hub.send(1, b"x", SHORT), Err(BusError::Closed { agent: 1 })));

    // Restarted: fresh, empty queues that work both ways.
    drop(port1);
    let port1 = hub.reconnect(1).unwrap();
    assert!(matches!(port1.recv(SHORT), Err(BusError::Timeout(_))), "the old agent's unread message is dropped");
    hub.send(1, b"welcome back", LONG).unwrap();
    assert_eq!(port1.recv(LONG).unwrap(), b"welcome back");
    port1.send(b"thanks", LONG).unwrap();
    assert_eq!(hub.recv(LONG).unwrap(), (1, b"thanks".to_vec()));
}

#[test]
fn shared_bus_times_out_disconnects_and_reconnects() {
    timeouts_disconnect_and_reconnect(shared);
}

#[test]
fn channel_bus_times_out_disconnects_and_reconnects() {
    timeouts_disconnect_and_reconnect(channels);
}

#[test]
fn a_full_ring_blocks_the_sender_until_the_reader_catches_up() {
    let (hub, ports) = SharedBus::new(1, SharedBusConfig { ring_bytes: 256, arena_bytes: 4096 });
    let msg = [7u8; 40]; // 44 bytes a frame: five fit in 256
    let mut sent = 0;
    while ports[0].send(&msg, SHORT).is_ok() {
        sent += 1;
        assert!(sent < 100, "a ring is bounded");
    }
    assert_eq!(sent, 5);
    let port = ports.into_iter().next().unwrap();
    let writer = thread::spawn(move || port.send(b"after the wait", LONG));
    thread::sleep(Duration::from_millis(30));
    for _ in 0..sent {
        assert_eq!(hub.recv(LONG).unwrap().1, msg);
    }
    writer.join().unwrap().unwrap();
    assert_eq!(hub.recv(LONG).unwrap().1, b"after the wait");
}

#[test]
fn large_payloads_travel_as_arena_handles_and_free_their_blocks() {
    let config = SharedBusConfig { ring_bytes: 256, arena_bytes: 32 << 10 };
    let (hub, ports) = SharedBus::new(1, config);
    let free = hub.arena_free_bytes();
    let big: Vec<u8> = (0..20_000u32).map(|i| (i * 31 % 251) as u8).collect();
    ports[0].send(&big, LONG).unwrap();
    assert!(hub.arena_free_bytes() < free, "the payload sits in the arena, not the ring");
    assert_eq!(hub.recv(LONG).unwrap().1, big);
    assert_eq!(hub.arena_free_bytes(), free, "the receiver freed it");
    // Two at once do not fit: the second waits for the first to be read.
    ports[0].send(&big, LONG).unwrap();
    assert!(matches!(ports[0].send(&big, SHORT), Err(BusError::Timeout(_))));
    assert!(matches!(ports[0].send(&vec![0; 40_000], SHORT), Err(BusError::TooLarge { len: 40_000, max: 32_768 })));
    assert_eq!(hub.recv(LONG).unwrap().1, big);
    assert_eq!(hub.arena_free_bytes(), free);
}

#[test]
fn a_frame_the_writer_never_published_is_invisible() {
    // A writer that dies after filling a frame but before storing `head` (the publication).
    let words: Vec<AtomicU32> = (0..HEADER_WORDS + 64).map(|_| AtomicU32::new(0)).collect();
    let ring = Ring::new(&words);
    assert!(matches!(ring.push(4, &[u32::from_le_bytes(*b"done")]), Push::Done));
    words[HEADER_WORDS + 2].store(8, Ordering::Relaxed); // a torn second frame: length...
    words[HEADER_WORDS + 3].store(u32::from_le_bytes(*b"half"), Ordering::Relaxed); // ...half its body
    let body = |first: u32| (first as usize).div_ceil(4);
    assert!(matches!(ring.pop(body), Pop::Frame(f) if f == [4, u32::from_le_bytes(*b"done")]));
    assert!(matches!(ring.pop(body), Pop::Empty { .. }), "the unpublished frame is not delivered");
}

/// Found by the `bus` fuzz target: the two transports disagreed about a crashed agent's
/// messages that the hub had not read yet (the shared bus delivered them, the channel bus
/// dropped them). Both drop them now, and a restarted agent starts clean.
fn a_crash_voids_what_is_in_flight(make: fn(usize) -> Made) {
    let (hub, mut ports) = make(2);
    let zero = Some(Duration::ZERO);
    ports[0].send(b"from the doomed agent", zero).unwrap();
    ports[1].send(b"from the other", zero).unwrap();
    hub.send(0, b"never read", zero).unwrap();
    hub.disconnect(0);
    assert_eq!(hub.recv(LONG).unwrap(), (1, b"from the other".to_vec()));
    assert!(matches!(hub.recv(zero), Err(BusError::Timeout(_))));
    assert!(matches!(ports[0].send(b"late", zero), Err(BusError::Closed { agent: 0 })));
    ports[0] = hub.reconnect(0).unwrap();
    assert!(matches!(ports[0].recv(zero), Err(BusError::Timeout(_))), "the restarted agent starts clean");
    assert!(matches!(hub.recv(zero), Err(BusError::Timeout(_))));
    ports[0].send(b"restarted", zero).unwrap();
    assert_eq!(hub.recv(LONG).unwrap(), (0, b"restarted".to_vec()));
}

#[test]
fn shared_bus_voids_a_crashed_agents_messages() {
    a_crash_voids_what_is_in_flight(shared);
}

#[test]
fn channel_bus_voids_a_crashed_agents_messages() {
    a_crash_voids_what_is_in_flight(channels);
}

/// Found by the `bus` fuzz target: a large payload whose send timed out on a full ring kept
/// its arena run for ever.
#[test]
fn a_send_that_times_out_gives_its_arena_run_back() {
    let (hub, ports) = SharedBus::new(1, SharedBusConfig { ring_bytes: 256, arena_bytes: 4096 });
    let free = hub.arena_free_bytes();
    // Empty messages fill the ring to its last word: not even a handle frame fits.
    while ports[0].send(&[], Some(Duration::ZERO)).is_ok() {}
    assert!(matches!(ports[0].send(&[2u8; 1000], Some(Duration::ZERO)), Err(BusError::Timeout(_))));
    assert_eq!(hub.arena_free_bytes(), free, "the run of the payload that never went out is free again");
}

/// A worker cut off and replaced while it still runs (a stuck agent left to end by itself)
/// is not heard any more, and cannot take its successor's messages.
fn a_replaced_worker_is_not_heard(make: fn(usize) -> Made) {
    let (hub, mut ports) = make(1);
    let zero = Some(Duration::ZERO);
    let old = ports.remove(0);
    hub.disconnect(0);
    let new = hub.reconnect(0).unwrap();
    for msg in [&b"from the old worker"[..], &[7; 3000]] {
        assert!(matches!(old.send(msg, zero), Err(BusError::Closed { agent: 0 })));
    }
    new.send(b"from the new one", zero).unwrap();
    assert_eq!(hub.recv(LONG).unwrap(), (0, b"from the new one".to_vec()));
    assert!(matches!(hub.recv(zero), Err(BusError::Timeout(_))));
    hub.send(0, b"for the new one", zero).unwrap();
    assert!(matches!(old.recv(zero), Err(BusError::Closed { agent: 0 })));
    assert_eq!(new.recv(LONG).unwrap(), b"for the new one");
}

#[test]
fn shared_bus_does_not_hear_a_replaced_worker() {
    a_replaced_worker_is_not_heard(shared);
}

#[test]
fn channel_bus_does_not_hear_a_replaced_worker() {
    a_replaced_worker_is_not_heard(channels);
}

/// The old worker's check of its generation and its publication are two steps: a frame it
/// publishes after the restart, stamped with its generation, is dropped unread (its arena run
/// freed), and the new worker's frames behind it come through.
#[test]
fn a_frame_from_an_older_generation_is_dropped_unread() {
    let (hub, ports) = SharedBus::new(1, SharedBusConfig { ring_bytes: 1024, arena_bytes: 64 << 10 });
    let free = hub.arena_free_bytes();
    hub.disconnect(0);
    let new = hub.reconnect(0).unwrap();
    drop(ports);
    let region = &hub.region;
    let (ring, zero) = (region.ring(0, true), Some(Duration::ZERO));
    assert_eq!(ring.generation(), 1);
    // As the old worker would, past its check: generation 0 on a small and a large message.
    region.send(0, ring, 0, b"stale", zero).unwrap();
    region.send(0, ring, 0, &[9; 3000], zero).unwrap();
    new.send(b"fresh", zero).unwrap();
    assert_eq!(hub.recv(LONG).unwrap(), (0, b"fresh".to_vec()));
    assert!(matches!(hub.recv(zero), Err(BusError::Timeout(_))));
    assert_eq!(hub.arena_free_bytes(), free, "the stale payload's run is freed");
}
