//! Pre-tokenization for byte-level BPE: cutting text into words before any merge happens.
//!
//! llama.cpp picks a list of regexes by `tokenizer.ggml.pre` (`llm_tokenizer_bpe` in
//! llama-vocab.cpp) and applies them in turn (`unicode_regex_split` in unicode.cpp): the first
//! splits the whole text; each later one splits every piece the previous ones made, and never
//! joins across them. Within a piece, both the matches *and the text between matches* become
//! pieces, so nothing is ever dropped.
//!
//! Two regexes are not run as regexes in llama.cpp but by hand-written matchers
//! (`unicode_regex_split_custom_gpt2` and `…_llama3`): GPT-2's and Llama 3's. Those are mirrored
//! here rule for rule ([`split_gpt2`], [`split_llama3`]), because they are what llama.cpp really
//! runs for the most common models, and they are much faster than a backtracking regex. Every
//! other regex goes through `fancy_regex`, which, like the `std::regex` llama.cpp falls back to,
//! is leftmost-first with backtracking and supports the `(?!\S)` lookahead these patterns need.
//!
//! Character classes follow Unicode general categories: `\p{L}` letters, `\p{N}` numbers
//! (`char::is_numeric`), and `\s` White_Space (`char::is_whitespace`), which is the set
//! llama.cpp's generated tables use. Letters come from the regex crate's Unicode tables (through
//! `fancy_regex`), since `char` has no "is letter" test. The Unicode versions of those tables and
//! of llama.cpp's may differ for the most recently assigned characters.

use fancy_regex::Regex;

use super::TokenizerError;

/// GPT-2's pattern. llama.cpp matches this exact string and runs [`split_gpt2`] instead; the
/// tests check the two agree.
#[cfg_attr(not(test), allow(dead_code))]
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama 3's pattern with llama.cpp's case-folding rewrite. Run by [`split_llama3`].
#[cfg_attr(not(test), allow(dead_code))]
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 2's: Llama 3's with single digits. Not special-cased by llama.cpp, so a real regex.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Tekken (Mistral Nemo). llama.cpp's rewrite of the Lu/Ll classes into lookaheads.
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// GPT-4o / Llama 4, rewritten by llama.cpp the same way as Tekken's.
const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// DeepSeek V3's main pattern. llama.cpp evaluates `\p{S}` through its "collapsed" text, where
/// ASCII symbols are listed by hand and `~` was left out; `[\p{S}--~]` keeps that quirk.
const DEEPSEEK3: &str = r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}[\p{S}--~]]?[\p{L}\p{M}]+| ?[\p{P}[\p{S}--~]]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;
const BAILINGMOE: &str = r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+";
const SEED_CODER: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+";
/// BLOOM, Poro, GPT-3 Finnish, Viking: everything up to whitespace or sentence punctuation.
const BLOOM: &str = r" ?[^(\s|.,!?…。，、।۔،)]+";

/// One stage of pre-tokenization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Gpt2,
    Llama3,
    Regex(&'static str),
}

/// What `tokenizer.ggml.pre` implies, beyond the regexes (llama.cpp's `llama_vocab::impl::load`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PreConfig {
    stages: &'static [Stage],
    /// Look a whole word up in the vocabulary before merging (Llama 3, Tekken).
    pub(crate) ignore_merges: bool,
    /// The default for `tokenizer.ggml.add_bos_token` when the file does not say.
    pub(crate) add_bos: bool,
    /// llama.cpp clears the default BOS id (GLM-4).
    pub(crate) no_default_bos: bool,
}

impl PreConfig {
    const fn new(stages: &'static [Stage]) -> Self {
        Self { stages, ignore_merges: false, add_bos: false, no_default_bos: false }
    }
}

use Stage::{Gpt2, Llama3, Regex as Re};

const DEFAULT: PreConfig = PreConfig::new(&[Re(r"[\p{P}\$\+<=>\^~\|]+"), Gpt2, Re(r"\p{N}+"), Re("[0-9][0-9][0-9]")]);

/// The pre-tokenizers llama.cpp knows by these names, with its regexes and flags.
///
/// Left out on purpose: names whose llama.cpp handling is not a plain list of regexes
/// (`kimi-k2`, `afmoe`: custom code; `superbpe`: empty-match lookaheads), BERT-style ones that
/// add separators (`jina-*`, `roberta-bpe`), and `deepseek-llm`, whose hand-written letter class
/// is several hundred characters long.
pub(crate) fn config(pre: &str) -> Option<PreConfig> {
    const LLAMA3_STAGES: &[Stage] = &[Llama3];
    Some(match pre {
        "default" => DEFAULT,
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2" => {
            PreConfig { ignore_merges: true, add_bos: true, ..PreConfig::new(LLAMA3_STAGES) }
        }
        "dbrx" | "smaug-bpe" => PreConfig::new(LLAMA3_STAGES),
        "glm4" | "chatglm-bpe" => PreConfig { no_default_bos: true, ..PreConfig::new(LLAMA3_STAGES) },
        "deepseek-coder" => PreConfig::new(&[
            Re(r"[\r\n]"),
            Re(r"\s?\p{L}+"),
            Re(r"\s?\p{P}+"),
            Re("[一-龥ࠀ-一가-\u{D7FF}]+"),
            Re(r"\p{N}"),
        ]),
        "deepseek-v3" | "hunyuan-dense" => {
            PreConfig::new(&[Re(r"\p{N}{1,3}"), Re("[一-龥\u{3040}-ゟ゠-ヿ]+"), Re(DEEPSEEK3)])
        }
        "falcon" => PreConfig::new(&[Re(r"[\p{P}\$\+<=>\^~\|`]+"), Gpt2, Re("[0-9][0-9][0-9]")]),
        "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone" | "minerva-7b" => {
            PreConfig::new(&[Re(r"\p{N}"), Gpt2])
        }
        "gpt-2" | "phi-2" | "gigachat" | "a.x-4.0" | "mellum" | "mpt" | "olmo" | "jais" | "trillion"
        | "granite-docling" | "exaone4" => PreConfig::new(&[Gpt2]),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "megrez" | "stablelm2" | "hunyuan" | "grok-2" => {
            PreConfig::new(&[Re(QWEN2)])
        }
        "poro-chat" | "bloom" | "gpt3-finnish" => PreConfig::new(&[Re(BLOOM)]),
        "viking" => PreConfig::new(&[Re(BLOOM), Re(r"\p{N}")]),
        "tekken" => PreConfig { ignore_merges: true, add_bos: true, ..PreConfig::new(&[Re(TEKKEN)]) },
        "chameleon" => PreConfig {
            add_bos: true,
            ..PreConfig::new(&[
                Re("<sentinel:[0-9]+>"),
                Re("(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z"),
                Re(r"([\t\n]|    |  )"),
                Re(r"\p{N}"),
                Re(r"[\p{P}!-/:-@\[-`{-~]"),
                Gpt2,
            ])
        },
        "gpt-4o" | "llama4" | "minimax-m2" => PreConfig::new(&[Re(GPT4O)]),
        "bailingmoe" | "bailingmoe2" | "llada-moe" => PreConfig::new(&[Re(BAILINGMOE)]),
        "seed-coder" => PreConfig::new(&[Re(SEED_CODER)]),
        _ => return None,
    })
}

/// A compiled pre-tokenizer.
#[derive(Clone, Debug)]
pub(crate) struct PreTokenizer {
    stages: Vec<Compiled>,
    /// `\p{L}+`, for the letter flags the hand-written matchers need.
    letters: Regex,
}

#[derive(Clone, Debug)]
enum Compiled {
    Gpt2,
    Llama3,
    Regex(Regex),
}

fn compile(pattern: &str) -> Result<Regex, TokenizerError> {
    Regex::new(pattern).map_err(|e| TokenizerError::Regex { pattern: pattern.to_string(), message: e.to_string() })
}

// Per-character flags for the hand-written matchers. `IN` marks a position inside the piece
// being split: llama.cpp's flags are all-zero outside it, and non-zero for every code point
// inside (unassigned ones included), which its matchers rely on.
const IN: u8 = 1;
const LETTER: u8 = 2;
const NUMBER: u8 = 4;
const SPACE: u8 = 8;

/// The characters of one text fragment: where each starts, what it is, and its flags.
struct Chars {
    /// Byte offset of each character, plus one final entry for the end of the text.
    start: Vec<usize>,
    ch: Vec<char>,
    flags: Vec<u8>,
    /// What general regexes see, and where each character starts in it: the text with every
    /// non-ASCII whitespace character replaced by U+000B. llama.cpp does this before handing text
    /// to `std::regex`, whose `\s` knows only ASCII; it matters for classes that would otherwise
    /// contain such a character (deepseek-coder's `[ࠀ-一]` spans U+2028 and U+3000). `None` when
    /// the text has no such character.
    regex_view: Option<(String, Vec<usize>)>,
}

impl Chars {
    fn len(&self) -> usize {
        self.ch.len()
    }
    fn flags(&self, pos: usize, end: usize) -> u8 {
        if pos < end { self.flags[pos] } else { 0 }
    }
}

impl PreTokenizer {
    pub(crate) fn new(config: &PreConfig) -> Result<Self, TokenizerError> {
        let stages = config
            .stages
            .iter()
            .map(|stage| match stage {
                Stage::Gpt2 => Ok(Compiled::Gpt2),
                Stage::Llama3 => Ok(Compiled::Llama3),
                Stage::Regex(pattern) => compile(pattern).map(Compiled::Regex),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { stages, letters: compile(r"\p{L}+")? })
    }

    /// Splits `text` into words, in order; concatenated they give back `text`.
    pub(crate) fn split<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let chars = self.chars(text);
        // Pieces are half-open ranges of character indices.
        let mut pieces = vec![(0, chars.len())];
        let mut next = Vec::new();
        for stage in &self.stages {
            next.clear();
            for &(a, b) in &pieces {
                match stage {
                    Compiled::Gpt2 => split_gpt2(&chars, a, b, &mut next),
                    Compiled::Llama3 => split_llama3(&chars, a, b, &mut next),
                    Compiled::Regex(re) => split_regex(re, text, &chars, a, b, &mut next),
                }
            }
            std::mem::swap(&mut pieces, &mut next);
        }
        pieces
            .into_iter()
            .filter(|(a, b)| a < b)
            .filter_map(|(a, b)| text.get(chars.start[a]..chars.start[b]))
            .collect()
    }

    fn chars(&self, text: &str) -> Chars {
        let mut start = Vec::with_capacity(text.len() + 1);
        let mut ch = Vec::with_capacity(text.len());
        let mut flags = Vec::with_capacity(text.len());
        for (i, c) in text.char_indices() {
            start.push(i);
            ch.push(c);
            let mut f = IN;
            if c.is_numeric() {
                f |= NUMBER;
            }
            if c.is_whitespace() {
                f |= SPACE;
            }
            if c.is_ascii_alphabetic() {
                f |= LETTER;
            }
            flags.push(f);
        }
        start.push(text.len());
        if !text.is_ascii() {
            // Walk the letter runs and the characters together; both are in text order.
            let mut i = 0;
            for m in self.letters.find_iter(text).flatten() {
                while i < ch.len() && start[i] < m.start() {
                    i += 1;
                }
                while i < ch.len() && start[i] < m.end() {
                    flags[i] |= LETTER;
                    i += 1;
                }
            }
        }
        let regex_view = ch.iter().any(|c| !c.is_ascii() && c.is_whitespace()).then(|| {
            let mut view = String::with_capacity(text.len());
            let mut view_start = Vec::with_capacity(start.len());
            for &c in &ch {
                view_start.push(view.len());
                view.push(if !c.is_ascii() && c.is_whitespace() { '\u{0B}' } else { c });
            }
            view_start.push(view.len());
            (view, view_start)
        });
        Chars { start, ch, flags, regex_view }
    }
}

/// Hands out pieces `[prev, end)` of one range, skipping empty ones (llama.cpp's `_add_token`).
struct Cutter<'o> {
    prev: usize,
    out: &'o mut Vec<(usize, usize)>,
}

impl Cutter<'_> {
    fn cut(&mut self, end: usize) {
        if end > self.prev {
            self.out.push((self.prev, end));
        }
        self.prev = end;
    }
}

/// GPT-2's `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)` over the
/// characters `[a, b)`, as llama.cpp's `unicode_regex_split_custom_gpt2` runs it.
fn split_gpt2(c: &Chars, a: usize, b: usize, out: &mut Vec<(usize, usize)>) {
    let mut cut = Cutter { prev: a, out };
    let mut pos = a;
    while pos < b {
        let ch = c.ch[pos];
        let flags = c.flags[pos];

        // 's 't 're 've 'm 'll 'd (lower case only)
        if ch == '\'' && pos + 1 < b {
            let next = c.ch[pos + 1];
            if matches!(next, 's' | 't' | 'm' | 'd') {
                pos += 2;
                cut.cut(pos);
                continue;
            }
            if pos + 2 < b && matches!((next, c.ch[pos + 2]), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
                pos += 3;
                cut.cut(pos);
                continue;
            }
        }

        // ' ?\p{L}+' and ' ?\p{N}+' (no character is both a letter and a number).
        let flags2 = if ch == ' ' { c.flags(pos + 1, b) } else { flags };
        let class = flags2 & (LETTER | NUMBER);
        if class != 0 {
            pos += usize::from(ch == ' ');
            while c.flags(pos, b) & class != 0 {
                pos += 1;
            }
            cut.cut(pos);
            continue;
        }
        // ' ?[^\s\p{L}\p{N}]+'
        let other = |f: u8| f & IN != 0 && f & (SPACE | LETTER | NUMBER) == 0;
        if other(flags2) {
            pos += usize::from(ch == ' ');
            while other(c.flags(pos, b)) {
                pos += 1;
            }
            cut.cut(pos);
            continue;
        }

        let mut spaces = 0;
        while c.flags(pos + spaces, b) & SPACE != 0 {
            spaces += 1;
        }
        if spaces > 1 && pos + spaces < b {
            // \s+(?!\S): leave the last space to the word that follows.
            pos += spaces - 1;
        } else if spaces > 0 {
            pos += spaces;
        } else {
            // Nothing matched: the character stands alone.
            pos += 1;
        }
        cut.cut(pos);
    }
}

/// Llama 3's pattern (see [`LLAMA3`]) over the characters `[a, b)`, as llama.cpp's
/// `unicode_regex_split_custom_llama3` runs it.
fn split_llama3(c: &Chars, a: usize, b: usize, out: &mut Vec<(usize, usize)>) {
    let mut cut = Cutter { prev: a, out };
    let mut pos = a;
    while pos < b {
        let ch = c.ch[pos];
        let flags = c.flags[pos];

        // (?i:'s|'t|'re|'ve|'m|'ll|'d)
        if ch == '\'' && pos + 1 < b {
            let next = c.ch[pos + 1].to_ascii_lowercase();
            if matches!(next, 's' | 't' | 'm' | 'd') {
                pos += 2;
                cut.cut(pos);
                continue;
            }
            if pos + 2 < b && matches!((next, c.ch[pos + 2].to_ascii_lowercase()), ('r', 'e') | ('v', 'e') | ('l', 'l'))
            {
                pos += 3;
                cut.cut(pos);
                continue;
            }
        }

        // [^\r\n\p{L}\p{N}]?\p{L}+
        if !(ch == '\r' || ch == '\n' || flags & NUMBER != 0)
            && (flags & LETTER != 0 || c.flags(pos + 1, b) & LETTER != 0)
        {
            pos += 1;
            while c.flags(pos, b) & LETTER != 0 {
                pos += 1;
            }
            cut.cut(pos);
            continue;
        }

        // \p{N}{1,3}
        if flags & NUMBER != 0 {
            let mut run_start = pos;
            while c.flags(pos, b) & NUMBER != 0 {
                pos += 1;
                if pos - run_start >= 3 {
                    cut.cut(pos);
                    run_start = pos;
                }
            }
            cut.cut(pos);
            continue;
        }

        // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
        let other = |f: u8| f & IN != 0 && f & (SPACE | LETTER | NUMBER) == 0;
        let flags2 = if ch == ' ' { c.flags(pos + 1, b) } else { flags };
        // llama.cpp tests the second condition on the current character's flags (always set
        // inside the piece), so a space that ends the piece is taken here, alone: the same cut
        // the whitespace rules would make.
        if flags2 & (SPACE | LETTER | NUMBER) == 0 && flags & IN != 0 {
            pos += usize::from(ch == ' ');
            while other(c.flags(pos, b)) {
                pos += 1;
            }
            while pos < b && matches!(c.ch[pos], '\r' | '\n') {
                pos += 1;
            }
            cut.cut(pos);
            continue;
        }

        let mut spaces = 0;
        let mut after_newline = None;
        while c.flags(pos + spaces, b) & SPACE != 0 {
            if matches!(c.ch[pos + spaces], '\r' | '\n') {
                after_newline = Some(pos + spaces + 1);
            }
            spaces += 1;
        }
        if let Some(end) = after_newline {
            // \s*[\r\n]+: up to and including the last newline of the run.
            pos = end;
        } else if spaces > 1 && pos + spaces < b {
            // \s+(?!\S)
            pos += spaces - 1;
        } else if spaces > 0 {
            // \s+
            pos += spaces;
        } else {
            pos += 1;
        }
        cut.cut(pos);
    }
}

/// Splits the characters `[a, b)` with a general regex, keeping the text between matches as
/// pieces of its own (llama.cpp's `unicode_regex_split_stl`). The regex sees only this piece, so
/// lookaheads stop at its end.
fn split_regex(re: &Regex, text: &str, c: &Chars, a: usize, b: usize, out: &mut Vec<(usize, usize)>) {
    let (view, start) = match &c.regex_view {
        Some((view, start)) => (view.as_str(), start.as_slice()),
        None => (text, c.start.as_slice()),
    };
    let base = start[a];
    let Some(hay) = view.get(base..start[b]) else {
        out.push((a, b));
        return;
    };
    // Matches lie on character boundaries, so every offset is some character's start.
    let index = |byte: usize| start[a..=b].binary_search(&(base + byte)).map_or(b, |i| a + i);
    let mut cut = Cutter { prev: a, out };
    for found in re.find_iter(hay) {
        // An error means fancy_regex gave up backtracking; llama.cpp has no such limit. The rest
        // of the piece then stays whole, which is still a valid (if coarser) segmentation.
        let Ok(m) = found else { break };
        cut.cut(index(m.start()));
        cut.cut(index(m.end()));
    }
    cut.cut(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pre: &str, text: &str) -> Vec<String> {
        let config = config(pre).expect("known pre-tokenizer");
        PreTokenizer::new(&config).expect("compiles").split(text).into_iter().map(String::from).collect()
    }

    /// The same text through the hand-written matcher and through the regex it stands for.
    fn agree(custom: Stage, pattern: &str, text: &str) {
        let by_hand = PreTokenizer::new(&PreConfig::new(if custom == Gpt2 { &[Gpt2] } else { &[Llama3] }))
            .expect("compiles")
            .split(text);
        let regex = PreTokenizer {
            stages: vec![Compiled::Regex(compile(pattern).expect("compiles"))],
            letters: compile(r"\p{L}+").expect("compiles"),
        }
        .split(text);
        assert_eq!(by_hand, regex, "{text:?}");
    }

    const SAMPLES: &[&str] = &[
        "Hello world",
        "   leading and trailing spaces   ",
        "tabs\tand\nnewlines\n\n\nand\r\nwindows \n x",
        "It's we're they've I'm you'll he'd DON'T 'x '",
        "numbers: 0 7 42 123 4567 89012 3.14159 -17 1,000,000 ١٢٣",
        "Héllo, café, naïve, Ångström, über — Привет мир! हिन्दी العربية",
        "emoji: 🤖🔥👍🏽 and 🇫🇷 ©®™ €£¥ ½¼",
        "fn main() {\n    println!(\"{}\", 1 + 2);\n}\n",
        "a\u{a0}b\u{3000}c \u{2003} d\u{85}e  ",
        "  \t\n  x  \r\n\r\n  ",
        " ",
        "",
        "'",
        "\u{378}\u{378} x\u{e000}",
    ];

    #[test]
    fn hand_written_matchers_agree_with_their_regexes() {
        for text in SAMPLES {
            agree(Gpt2, GPT2, text);
            agree(Llama3, LLAMA3, text);
        }
    }

    #[test]
    fn pieces_cover_the_text() {
        for pre in ["default", "gpt-2", "llama-bpe", "qwen2", "smollm", "deepseek-coder", "deepseek-v3", "tekken"] {
            for text in SAMPLES {
                assert_eq!(split(pre, text).concat(), *text, "{pre}: {text:?}");
            }
        }
    }

    #[test]
    fn smollm_isolates_digits_and_spaces_before_them() {
        assert_eq!(split("smollm", "a 42 b"), ["a", " ", "4", "2", " b"]);
        assert_eq!(split("smollm", "hello  world"), ["hello", " ", " world"]);
        assert_eq!(split("smollm", "x   "), ["x", "   "]);
    }

    #[test]
    fn llama3_groups_digits_by_three_and_keeps_newlines() {
        assert_eq!(split("llama-bpe", "12345 a\n\nb"), ["123", "45", " a", "\n\n", "b"]);
        assert_eq!(split("llama-bpe", "DON'T"), ["DON", "'T"]);
        assert_eq!(split("qwen2", "12345"), ["1", "2", "3", "4", "5"]);
    }

    #[test]
    fn general_regexes_see_non_ascii_whitespace_as_ascii() {
        // U+2028 and U+3000 lie inside deepseek-coder's CJK range, but llama.cpp's regexes see
        // them as U+000B, so they stay with the space before them; U+200B is no whitespace.
        assert_eq!(split("deepseek-coder", "a \u{2028}\u{3000}\u{200b}"), ["a", " \u{2028}\u{3000}", "\u{200b}"]);
    }

    #[test]
    fn every_listed_regex_compiles() {
        for pre in [
            "default",
            "llama-bpe",
            "dbrx",
            "glm4",
            "deepseek-coder",
            "deepseek-v3",
            "falcon",
            "smollm",
            "gpt-2",
            "qwen2",
            "bloom",
            "viking",
            "tekken",
            "chameleon",
            "gpt-4o",
            "bailingmoe",
            "seed-coder",
        ] {
            let config = config(pre).expect("listed");
            PreTokenizer::new(&config).unwrap_or_else(|e| panic!("{pre}: {e}"));
        }
        assert!(config("kimi-k2").is_none());
    }
}
