//! Random interleavings of sends, receives, crashes (disconnect) and restarts (reconnect) on
//! both bus transports, single-threaded with zero timeouts, against a model of per-agent FIFO
//! queues: every message received is the oldest one committed (its send returned Ok) and not
//! yet received, in order, whole; a receive finds nothing only when nothing is committed; a
//! crash drops exactly what the crashed agent had not read or sent (and reclaiming its arena
//! blocks takes nothing from the others); and once everything is drained, the shared bus's
//! arena is all free again (no payload leaked).
#![no_main]

use std::collections::VecDeque;
use std::time::Duration;

use hearth_agents::bus::{AgentPort, BusError, ChannelBus, HubPort, SharedBus, SharedBusConfig};
use libfuzzer_sys::fuzz_target;

const AGENTS: usize = 3;
const NOW: Option<Duration> = Some(Duration::ZERO);

/// What each agent's queues hold: [to the agent, to the hub].
#[derive(Default)]
struct Model {
    queues: [[VecDeque<Vec<u8>>; 2]; AGENTS],
}

/// A message that says which it is: its serial number, then filler of a given length.
fn message(serial: u32, len: usize) -> Vec<u8> {
    let mut m = serial.to_le_bytes().to_vec();
    m.extend((0..len).map(|i| (serial as usize + i) as u8));
    m
}

fn run(ops: &[u8], hub: &dyn HubPort, mut ports: Vec<Option<Box<dyn AgentPort>>>) {
    let mut model = Model::default();
    let mut serial = 0u32;
    for op in ops.chunks_exact(3) {
        let agent = op[1] as usize % AGENTS;
        // Short messages travel in the ring, long ones (past 256 bytes) through the arena.
        let len = if op[2] < 200 { op[2] as usize } else { (op[2] as usize - 200) * 97 };
        match op[0] % 6 {
            0 => {
                serial += 1;
                let msg = message(serial, len);
                match hub.send(agent, &msg, NOW) {
                    Ok(()) => model.queues[agent][0].push_back(msg),
                    Err(BusError::Timeout(_) | BusError::TooLarge { .. }) => {}
                    Err(BusError::Closed { .. }) => assert!(ports[agent].is_none(), "closed while connected"),
                    Err(e) => panic!("hub send: {e}"),
                }
            }
            1 => {
                let Some(port) = &ports[agent] else { continue };
                serial += 1;
                let msg = message(serial, len);
                match port.send(&msg, NOW) {
                    Ok(()) => model.queues[agent][1].push_back(msg),
                    Err(BusError::Timeout(_) | BusError::TooLarge { .. }) => {}
                    Err(e) => panic!("agent {agent} send: {e}"),
                }
            }
            2 => match hub.recv(NOW) {
                Ok((from, msg)) => {
                    assert_eq!(model.queues[from][1].pop_front().as_ref(), Some(&msg), "hub got from agent {from}");
                }
                Err(BusError::Timeout(_) | BusError::Closed { .. }) => {
                    assert!(model.queues.iter().all(|q| q[1].is_empty()), "a committed message was not delivered");
                }
                Err(e) => panic!("hub recv: {e}"),
            },
            3 => {
                let Some(port) = &ports[agent] else { continue };
                match port.recv(NOW) {
                    Ok(msg) => assert_eq!(model.queues[agent][0].pop_front().as_ref(), Some(&msg), "agent {agent} got"),
                    Err(BusError::Timeout(_)) => assert!(model.queues[agent][0].is_empty(), "agent {agent} missed one"),
                    Err(e) => panic!("agent {agent} recv: {e}"),
                }
            }
            4 => {
                // A crash: the agent's end goes, and so does everything in its queues.
                hub.disconnect(agent);
                if let Some(port) = ports[agent].take() {
                    assert!(matches!(port.send(b"late", NOW), Err(BusError::Closed { .. })));
                }
                // Its worker is gone: what it held is given back (and nothing anyone else holds).
                hub.reclaim(agent);
                model.queues[agent] = Default::default();
            }
            _ => {
                if ports[agent].is_none() {
                    ports[agent] = Some(hub.reconnect(agent).expect("reconnect"));
                }
            }
        }
    }
    // Drain: everything committed comes out, in order.
    for agent in 0..AGENTS {
        if let Some(port) = &ports[agent] {
            while let Some(want) = model.queues[agent][0].pop_front() {
                assert_eq!(port.recv(NOW).expect("committed, so there"), want);
            }
        }
    }
    while model.queues.iter().any(|q| !q[1].is_empty()) {
        let (from, msg) = hub.recv(NOW).expect("committed, so there");
        assert_eq!(model.queues[from][1].pop_front(), Some(msg));
    }
}

fuzz_target!(|ops: &[u8]| {
    let config = SharedBusConfig { ring_bytes: 256, arena_bytes: 4096 };
    let (shared, ports) = SharedBus::new(AGENTS, config);
    let arena = shared.arena_free_bytes();
    run(ops, &shared, ports.into_iter().map(Some).collect());
    // Crashed agents' queues are drained when they restart; restart them all to see.
    for agent in 0..AGENTS {
        shared.disconnect(agent);
        drop(shared.reconnect(agent).expect("reconnect"));
    }
    assert_eq!(shared.arena_free_bytes(), arena, "arena blocks leaked");

    let (channel, ports) = ChannelBus::new(AGENTS);
    run(ops, &channel, ports.into_iter().map(Some).collect());
});
