//! GPT-2's byte-level alphabet (`bytes_to_unicode` in OpenAI's encoder.py, `unicode_byte_to_utf8`
//! in llama.cpp's unicode.cpp).
//!
//! Byte-level BPE vocabularies never contain raw bytes: every byte is first replaced by one
//! printable character, so that token texts are valid, whitespace-free strings. The 188 bytes
//! that already are printable Latin-1 (`!`..`~`, `¡`..`¬`, `®`..`ÿ`) stand for themselves; the
//! other 68 (controls, space, DEL, the C1 range, NBSP and the soft hyphen) are given the code
//! points 256, 257, … in byte order. That is why a space shows up as `Ġ` (U+0120 = 256 + 0x20)
//! and a newline as `Ċ` (U+010A).
//!
//! Both directions are closed-form, so no tables need building at run time.

/// The first code point handed out to a non-printable byte.
const SHIFTED: u32 = 256;
/// Non-printable bytes 0x00..=0x20 take 256..=288; 0x7F..=0xA0 take 289..=322; 0xAD takes 323.
const LOW_COUNT: u32 = 0x21;
const MID_COUNT: u32 = 0xA1 - 0x7F;

/// Whether `b` is one of the 188 bytes that map to themselves.
const fn is_printable(b: u8) -> bool {
    matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// The character that stands for byte `b` in a byte-level BPE vocabulary.
pub(crate) const fn byte_to_char(b: u8) -> char {
    let cp = if is_printable(b) {
        b as u32
    } else if b <= 0x20 {
        SHIFTED + b as u32
    } else if b < 0xA1 {
        SHIFTED + LOW_COUNT + (b as u32 - 0x7F)
    } else {
        // Only 0xAD (the soft hyphen) is left.
        SHIFTED + LOW_COUNT + MID_COUNT
    };
    // Every value above is below 0x144, far from the surrogate range.
    match char::from_u32(cp) {
        Some(c) => c,
        None => char::REPLACEMENT_CHARACTER,
    }
}

/// The byte that `c` stands for, if `c` is part of the byte-level alphabet.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    match cp {
        0..=0xFF => u8::try_from(cp).ok().filter(|&b| is_printable(b)),
        _ if cp < SHIFTED + LOW_COUNT => u8::try_from(cp - SHIFTED).ok(),
        _ if cp < SHIFTED + LOW_COUNT + MID_COUNT => u8::try_from(cp - SHIFTED - LOW_COUNT + 0x7F).ok(),
        _ if cp == SHIFTED + LOW_COUNT + MID_COUNT => Some(0xAD),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The algorithm as OpenAI wrote it: printable bytes first, then the rest numbered from 256.
    fn reference() -> Vec<char> {
        let mut map: Vec<Option<u32>> = vec![None; 256];
        for b in (0x21..=0x7E).chain(0xA1..=0xAC).chain(0xAE..=0xFF) {
            map[b] = Some(b as u32);
        }
        let mut n = 0;
        for slot in map.iter_mut() {
            if slot.is_none() {
                *slot = Some(256 + n);
                n += 1;
            }
        }
        map.into_iter().map(|cp| char::from_u32(cp.expect("filled")).expect("valid")).collect()
    }

    #[test]
    fn matches_the_reference_algorithm() {
        let want = reference();
        for b in 0..=255u8 {
            assert_eq!(byte_to_char(b), want[b as usize], "byte {b:#04x}");
        }
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(b'a'), 'a');
    }

    #[test]
    fn round_trips_every_byte_and_nothing_else() {
        let mut seen = std::collections::HashSet::new();
        for b in 0..=255u8 {
            let c = byte_to_char(b);
            assert!(seen.insert(c), "byte {b:#04x} shares {c:?}");
            assert_eq!(char_to_byte(c), Some(b), "byte {b:#04x} via {c:?}");
        }
        // Code points that no byte maps to have no byte.
        for cp in (0u32..0x400).chain([0x2581, 0x1F600]) {
            let Some(c) = char::from_u32(cp) else { continue };
            if !seen.contains(&c) {
                assert_eq!(char_to_byte(c), None, "{c:?}");
            }
        }
    }
}
