//! A single-producer, single-consumer ring of length-prefixed frames over shared words.
//!
//! Layout: `[head, tail, closed, generation, data...]`. `head` and `tail` count bytes written and read
//! (wrapping u32s; the data size is a power of two). A frame is a length word followed by its
//! payload padded to whole words. The writer fills the frame, then publishes it by storing
//! `head` with Release ordering: a writer that dies mid-frame never publishes it, so no torn
//! frame is ever visible to the reader.

use std::sync::atomic::{AtomicU32, Ordering};

pub(crate) const HEADER_WORDS: usize = 4;
const HEAD: usize = 0;
const TAIL: usize = 1;
const CLOSED: usize = 2;
const GENERATION: usize = 3;

/// A view of one ring inside a region; `words` is its header and data.
#[derive(Clone, Copy)]
pub(crate) struct Ring<'a> {
    words: &'a [AtomicU32],
}

pub(crate) enum Push {
    Done,
    /// Not enough free space now; try again after the reader moves `tail`.
    Full {
        tail: u32,
    },
    Closed,
}

pub(crate) enum Pop {
    Frame(Vec<u32>),
    /// Nothing published; wait for `head` to move from this value.
    Empty {
        head: u32,
    },
    Closed,
}

impl<'a> Ring<'a> {
    pub fn new(words: &'a [AtomicU32]) -> Self {
        debug_assert!((words.len() - HEADER_WORDS).is_power_of_two());
        Self { words }
    }

    fn data_bytes(&self) -> u32 {
        ((self.words.len() - HEADER_WORDS) * 4) as u32
    }

    fn data(&self, byte_index: u32) -> &AtomicU32 {
        let mask = self.data_bytes() - 1;
        &self.words[HEADER_WORDS + ((byte_index & mask) / 4) as usize]
    }

    pub fn head_word(&self) -> &'a AtomicU32 {
        &self.words[HEAD]
    }

    pub fn tail_word(&self) -> &'a AtomicU32 {
        &self.words[TAIL]
    }

    /// The largest frame body (in words) this ring can ever hold.
    pub fn max_body_words(&self) -> usize {
        self.words.len() - HEADER_WORDS - 1
    }

    pub fn close(&self) {
        self.words[CLOSED].store(1, Ordering::Release);
    }

    pub fn reopen(&self) {
        self.words[CLOSED].store(0, Ordering::Release);
    }

    pub fn is_closed(&self) -> bool {
        self.words[CLOSED].load(Ordering::Acquire) != 0
    }

    /// Which agent worker the ring is for now (bumped on each restart; kept by the bus).
    pub fn generation(&self) -> u32 {
        self.words[GENERATION].load(Ordering::Acquire)
    }

    pub fn set_generation(&self, generation: u32) {
        self.words[GENERATION].store(generation, Ordering::Release);
    }

    /// Appends a frame of `len_word` (the first word) and `body`.
    pub fn push(&self, len_word: u32, body: &[u32]) -> Push {
        if self.is_closed() {
            return Push::Closed;
        }
        let head = self.words[HEAD].load(Ordering::Relaxed);
        let tail = self.words[TAIL].load(Ordering::Acquire);
        let need = 4 * (1 + body.len() as u32);
        if self.data_bytes() - head.wrapping_sub(tail) < need {
            return Push::Full { tail };
        }
        self.data(head).store(len_word, Ordering::Relaxed);
        for (i, &w) in body.iter().enumerate() {
            self.data(head.wrapping_add(4 * (1 + i as u32))).store(w, Ordering::Relaxed);
        }
        self.words[HEAD].store(head.wrapping_add(need), Ordering::Release);
        Push::Done
    }

    /// Takes the next frame: its first word, then `body_words(first)` more.
    pub fn pop(&self, body_words: impl Fn(u32) -> usize) -> Pop {
        let tail = self.words[TAIL].load(Ordering::Relaxed);
        let head = self.words[HEAD].load(Ordering::Acquire);
        if head == tail {
            return if self.is_closed() { Pop::Closed } else { Pop::Empty { head } };
        }
        let first = self.data(tail).load(Ordering::Relaxed);
        let n = body_words(first).min(self.max_body_words());
        let mut frame = Vec::with_capacity(1 + n);
        frame.push(first);
        for i in 0..n {
            frame.push(self.data(tail.wrapping_add(4 * (1 + i as u32))).load(Ordering::Relaxed));
        }
        self.words[TAIL].store(tail.wrapping_add(4 * (1 + n as u32)), Ordering::Release);
        Pop::Frame(frame)
    }
}
