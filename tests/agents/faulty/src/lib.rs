//! Misbehaves as its `config` says, for the supervisor's tests:
//! `trap`, `panic`, `spin` (loops forever), `hog` (allocates without bound), `escape` (writes
//! outside its memory), `trap-first` (traps on a turn's first attempt only), `random` (on
//! about one attempt in four, one of trap, panic, spin or hog, picked by a hash of the step,
//! turn and attempt, so a run is still deterministic), or else echoes the last line of its
//! request.

use hearth_agent_sdk::{Turn, agent, send};

fn misbehave(turn: Turn) {
    let config = match turn.config.as_str() {
        "random" => random_fault(&turn),
        config => config,
    };
    match config {
        "trap" => core::arch::wasm32::unreachable(),
        "panic" => panic!("deliberately, on turn {}", turn.turn),
        "spin" => {
            let mut i = 0u64;
            loop {
                i = std::hint::black_box(i.wrapping_add(1));
            }
        }
        "hog" => {
            let mut hoard = Vec::new();
            loop {
                hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
            }
        }
        // SAFETY: none, on purpose: the address is past any memory the module can have.
        "escape" => unsafe { std::ptr::write_volatile(0xFFFF_FFF0usize as *mut u8, 1) },
        "trap-first" if turn.attempt == 0 => core::arch::wasm32::unreachable(),
        _ => {}
    }
    send(&format!("{} (attempt {})", turn.request.lines().last().unwrap_or(""), turn.attempt));
}

/// What a `random` agent does on this attempt.
fn random_fault(turn: &Turn) -> &'static str {
    // SplitMix64 of the turn's coordinates and its request (FNV-1a), so a run that asks
    // something else faults elsewhere.
    let request =
        turn.request.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3));
    let mut x = request ^ (u64::from(turn.step) << 40) ^ (u64::from(turn.turn) << 20) ^ u64::from(turn.attempt);
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    match x % 16 {
        0 => "trap",
        1 => "panic",
        2 => "spin",
        3 => "hog",
        _ => "echo",
    }
}

agent!(misbehave);
