//! Misbehaves as its `config` says, for the supervisor's tests:
//! `trap`, `panic`, `spin` (loops forever), `hog` (allocates without bound), `escape` (writes
//! outside its memory), `trap-first` (traps on a turn's first attempt only), or else echoes the
//! last line of its request.

use hearth_agent_sdk::{Turn, agent, send};

fn misbehave(turn: Turn) {
    match turn.config.as_str() {
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

agent!(misbehave);
