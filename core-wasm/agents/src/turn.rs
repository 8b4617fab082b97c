//! A turn as every side sees it: the committed messages it is shown, and its seed, which
//! depends only on the workflow's seed, the agent and the agent's turn number.

use serde::{Deserialize, Serialize};

/// A message committed to the transcript.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub step: u32,
    /// The sending agent's name.
    pub from: String,
    /// The sender's message number within the step.
    pub seq: u32,
    pub content: String,
}

/// One agent's turn: what it is asked, given what it can see.
#[derive(Clone, Debug, PartialEq)]
pub struct Turn {
    pub agent: usize,
    /// The agent's turn number over the run (0 for its first).
    pub turn: u32,
    /// The sequence number of this turn's message among the agent's messages of the step.
    pub seq: u32,
    /// The user-role request of this turn: the task, the messages it sees, what to do.
    pub request: String,
    /// The sampling seed of this turn.
    pub seed: u64,
    /// The earlier messages this turn sees (also quoted in `request`).
    pub seen: Vec<Message>,
}

/// SplitMix64's finaliser: a well-mixed 64-bit value from any input.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The RNG seed of `agent`'s turn number `turn` in a run seeded with `seed`.
pub fn turn_seed(seed: u64, agent: usize, turn: u32) -> u64 {
    mix(mix(mix(seed) ^ agent as u64) ^ u64::from(turn))
}
