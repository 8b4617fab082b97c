//! Reading `tokenizer.ggml.*` metadata into a [`Tokenizer`], following
//! `llama_vocab::impl::load` in llama.cpp's llama-vocab.cpp, including its defaults and its
//! per-model fixes of token attributes.
//!
//! The metadata is untrusted: every array is checked against the token count before it is
//! used, every id against the vocabulary, and every allocation is sized by data the GGUF reader
//! has already bounded by the file's real length.

use super::hash::FastMap;
use super::{Model, Token, TokenAttr, Tokenizer, TokenizerError, TokenizerKind, bpe, bytes, pre};
use crate::gguf::{Gguf, Value};

const MODEL: &str = "tokenizer.ggml.model";
const PRE: &str = "tokenizer.ggml.pre";
const TOKENS: &str = "tokenizer.ggml.tokens";
const SCORES: &str = "tokenizer.ggml.scores";
const TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
const MERGES: &str = "tokenizer.ggml.merges";
const ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
const ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
const ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";

/// The special-token ids llama.cpp reads. The deprecated prefix/suffix/middle keys come after
/// the FIM ones, so they win, as in llama.cpp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Bos,
    Eos,
    Eot,
    Eom,
    Unk,
    Sep,
    Pad,
    Mask,
    FimPre,
    FimSuf,
    FimMid,
    FimPad,
    FimRep,
    FimSep,
}

const ROLE_KEYS: [(&str, Role); 17] = [
    ("tokenizer.ggml.bos_token_id", Role::Bos),
    ("tokenizer.ggml.eos_token_id", Role::Eos),
    ("tokenizer.ggml.eot_token_id", Role::Eot),
    ("tokenizer.ggml.eom_token_id", Role::Eom),
    ("tokenizer.ggml.unknown_token_id", Role::Unk),
    ("tokenizer.ggml.seperator_token_id", Role::Sep),
    ("tokenizer.ggml.padding_token_id", Role::Pad),
    ("tokenizer.ggml.mask_token_id", Role::Mask),
    ("tokenizer.ggml.fim_pre_token_id", Role::FimPre),
    ("tokenizer.ggml.fim_suf_token_id", Role::FimSuf),
    ("tokenizer.ggml.fim_mid_token_id", Role::FimMid),
    ("tokenizer.ggml.fim_pad_token_id", Role::FimPad),
    ("tokenizer.ggml.fim_rep_token_id", Role::FimRep),
    ("tokenizer.ggml.fim_sep_token_id", Role::FimSep),
    ("tokenizer.ggml.prefix_token_id", Role::FimPre),
    ("tokenizer.ggml.suffix_token_id", Role::FimSuf),
    ("tokenizer.ggml.middle_token_id", Role::FimMid),
];

/// Token texts that identify a role when the metadata does not name it, in order of preference.
/// llama.cpp takes whichever its hash map yields first; the first listed one is taken here.
const AUTO_DETECT: [(Role, &[&str]); 8] = [
    (
        Role::Eot,
        &[
            "<|eot_id|>",
            "<|im_end|>",
            "<|end|>",
            "<end_of_turn>",
            "<|endoftext|>",
            "<|end_of_text|>",
            "<EOT>",
            "_<EOT>",
            "<｜end▁of▁sentence｜>",
            "<end_of_utterance>",
        ],
    ),
    (Role::Eom, &["<|eom_id|>"]),
    (
        Role::FimPre,
        &["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>"],
    ),
    (
        Role::FimSuf,
        &["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>"],
    ),
    (
        Role::FimMid,
        &["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>"],
    ),
    (Role::FimPad, &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>"]),
    (Role::FimRep, &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"]),
    (Role::FimSep, &["<|file_sep|>"]),
];

/// Texts of tokens that end generation wherever they appear in the vocabulary.
const EOG_TEXTS: [&str; 12] = [
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
];

/// gpt-oss channel markers, which llama.cpp always renders.
const ALWAYS_RENDERED: [&str; 4] = ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"];

#[derive(Default)]
struct Roles {
    ids: [Option<u32>; 14],
}

impl Roles {
    fn get(&self, role: Role) -> Option<u32> {
        self.ids[role as usize]
    }
    fn set(&mut self, role: Role, id: Option<u32>) {
        self.ids[role as usize] = id;
    }
}

fn value<'g>(g: &'g Gguf, key: &'static str) -> Option<&'g Value> {
    g.metadata.get(key)
}

fn wrong(key: &'static str, expected: &'static str, found: &Value) -> TokenizerError {
    TokenizerError::WrongType { key, expected, found: found.type_name() }
}

fn string<'g>(g: &'g Gguf, key: &'static str) -> Result<Option<&'g str>, TokenizerError> {
    match value(g, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(wrong(key, "a string", other)),
    }
}

fn boolean(g: &Gguf, key: &'static str) -> Result<Option<bool>, TokenizerError> {
    match value(g, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(wrong(key, "a bool", other)),
    }
}

fn array<'g>(g: &'g Gguf, key: &'static str) -> Result<Option<&'g [Value]>, TokenizerError> {
    match value(g, key) {
        None => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items)),
        Some(other) => Err(wrong(key, "an array", other)),
    }
}

/// An optional array that must have one entry per token.
fn per_token<'g>(g: &'g Gguf, key: &'static str, n_tokens: usize) -> Result<Option<&'g [Value]>, TokenizerError> {
    let items = array(g, key)?;
    match items {
        Some(items) if items.len() != n_tokens => {
            Err(TokenizerError::LengthMismatch { key, len: items.len(), n_tokens })
        }
        _ => Ok(items),
    }
}

fn element_error(key: &'static str, index: usize, expected: &'static str, found: &Value) -> TokenizerError {
    TokenizerError::WrongElementType { key, index, expected, found: found.type_name() }
}

/// Any integer value, signed or not.
fn integer(v: &Value) -> Option<i64> {
    match *v {
        Value::I8(x) => Some(x.into()),
        Value::I16(x) => Some(x.into()),
        Value::I32(x) => Some(x.into()),
        Value::I64(x) => Some(x),
        _ => v.as_u64().and_then(|x| i64::try_from(x).ok()),
    }
}

/// A token id from the metadata, which must lie inside the vocabulary.
fn token_id(g: &Gguf, key: &'static str, n_tokens: usize) -> Result<Option<u32>, TokenizerError> {
    let Some(v) = value(g, key) else { return Ok(None) };
    let id = v.as_u64().ok_or_else(|| wrong(key, "a non-negative integer", v))?;
    match u32::try_from(id) {
        Ok(id) if (id as usize) < n_tokens => Ok(Some(id)),
        _ => Err(TokenizerError::TokenIdOutOfRange { key, id, n_tokens }),
    }
}

pub(super) fn load(g: &Gguf) -> Result<Tokenizer, TokenizerError> {
    let model_name = string(g, MODEL)?.ok_or(TokenizerError::MissingKey(MODEL))?;
    let kind = match model_name {
        "gpt2" => TokenizerKind::Bpe,
        "llama" => TokenizerKind::Spm,
        other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
    };
    // SentencePiece has no pre-tokenizer; llama.cpp ignores the key for it.
    let pre_name = match kind {
        TokenizerKind::Bpe => string(g, PRE)?.unwrap_or("default"),
        TokenizerKind::Spm => "default",
    };
    let pre_config = match kind {
        TokenizerKind::Bpe => {
            Some(pre::config(pre_name).ok_or_else(|| TokenizerError::UnsupportedPre(pre_name.into()))?)
        }
        TokenizerKind::Spm => None,
    };

    let (mut tokens, token_to_id) = read_tokens(g)?;
    let n_tokens = tokens.len();

    // Defaults by tokenizer family, then the metadata's word.
    let mut roles = Roles::default();
    let in_range = |id: u32| ((id as usize) < n_tokens).then_some(id);
    let (mut add_bos, mut add_space_prefix) = match (kind, &pre_config) {
        (TokenizerKind::Spm, _) => {
            roles.set(Role::Bos, in_range(1));
            roles.set(Role::Eos, in_range(2));
            roles.set(Role::Unk, in_range(0));
            (true, true)
        }
        (TokenizerKind::Bpe, config) => {
            let no_bos = config.is_some_and(|c| c.no_default_bos);
            roles.set(Role::Bos, if no_bos { None } else { in_range(11) });
            roles.set(Role::Eos, in_range(11));
            (config.is_some_and(|c| c.add_bos), false)
        }
    };
    add_space_prefix = boolean(g, ADD_SPACE_PREFIX)?.unwrap_or(add_space_prefix);
    for (key, role) in ROLE_KEYS {
        if let Some(id) = token_id(g, key, n_tokens)? {
            roles.set(role, Some(id));
        }
    }
    add_bos = boolean(g, ADD_BOS)?.unwrap_or(add_bos);
    let add_eos = boolean(g, ADD_EOS)?.unwrap_or(false);

    // Roles found by text, and the control type llama.cpp forces on them.
    for (role, candidates) in AUTO_DETECT {
        if roles.get(role).is_none()
            && let Some(id) = candidates.iter().find_map(|text| token_to_id.get(*text).copied())
        {
            roles.set(role, Some(id));
            force_control(&mut tokens, id);
        }
    }

    let eog = end_of_generation(&mut tokens, &token_to_id, &roles);
    let specials = special_candidates(g, &mut tokens, &token_to_id);

    let model = read_model(g, pre_config, &token_to_id, &roles, n_tokens)?;

    Ok(Tokenizer {
        kind,
        pre_name: pre_name.to_string(),
        tokens,
        token_to_id,
        model,
        specials,
        bos: roles.get(Role::Bos),
        eos: roles.get(Role::Eos),
        eot: roles.get(Role::Eot),
        eom: roles.get(Role::Eom),
        unk: roles.get(Role::Unk),
        pad: roles.get(Role::Pad),
        eog,
        add_bos,
        add_eos,
        add_space_prefix,
    })
}

/// Each token's id by its text.
type TokenIds = FastMap<Box<str>, u32>;

/// The vocabulary and each token's type. llama.cpp reads each text as a C string, so it ends
/// at the first NUL; an empty text (which could never be matched) becomes a placeholder; and
/// two tokens with the same text are refused.
fn read_tokens(g: &Gguf) -> Result<(Vec<Token>, TokenIds), TokenizerError> {
    let texts = array(g, TOKENS)?.ok_or(TokenizerError::MissingKey(TOKENS))?;
    if texts.is_empty() {
        return Err(TokenizerError::EmptyVocab);
    }
    let n_tokens = texts.len();
    if u32::try_from(n_tokens).is_err() {
        return Err(TokenizerError::LengthMismatch { key: TOKENS, len: n_tokens, n_tokens: u32::MAX as usize });
    }
    let mut tokens = Vec::with_capacity(n_tokens);
    let mut token_to_id = FastMap::<Box<str>, u32>::default();
    token_to_id.reserve(n_tokens);
    for (i, v) in texts.iter().enumerate() {
        let Value::String(text) = v else { return Err(element_error(TOKENS, i, "a string", v)) };
        let text = text.split('\0').next().unwrap_or_default();
        let text: Box<str> = if text.is_empty() { format!("[EMPTY_{i}]").into() } else { text.into() };
        let id = i as u32;
        if let Some(&first) = token_to_id.get(&text) {
            return Err(TokenizerError::DuplicateToken { id, first, text: text.into() });
        }
        token_to_id.insert(text.clone(), id);
        tokens.push(Token { text, attr: TokenAttr::NORMAL });
    }
    if let Some(types) = per_token(g, TOKEN_TYPE, n_tokens)? {
        for (i, (token, t)) in tokens.iter_mut().zip(types).enumerate() {
            let t = integer(t).ok_or_else(|| element_error(TOKEN_TYPE, i, "an integer", t))?;
            token.attr = TokenAttr::from_token_type(t);
        }
    }

    Ok((tokens, token_to_id))
}

/// Gives `id` the control type llama.cpp forces on the roles and end tokens it finds by text.
fn force_control(tokens: &mut [Token], id: u32) {
    if let Some(t) = tokens.get_mut(id as usize)
        && !t.attr.contains(TokenAttr::CONTROL)
    {
        t.attr = TokenAttr::CONTROL;
    }
}

/// The end-of-generation set, sorted, as llama.cpp builds it (and the token types it forces).
fn end_of_generation(tokens: &mut [Token], token_to_id: &TokenIds, roles: &Roles) -> Vec<u32> {
    let mut eog: Vec<u32> = [Role::FimPad, Role::FimRep, Role::FimSep].iter().filter_map(|&r| roles.get(r)).collect();
    for text in EOG_TEXTS {
        if let Some(&id) = token_to_id.get(text) {
            eog.push(id);
            force_control(tokens, id);
        }
    }
    eog.extend([Role::Eos, Role::Eot, Role::Eom].iter().filter_map(|&r| roles.get(r)));
    for text in ALWAYS_RENDERED {
        if let Some(&id) = token_to_id.get(text) {
            tokens[id as usize].attr = TokenAttr::USER_DEFINED;
        }
    }
    eog.sort_unstable();
    eog.dedup();
    // gpt-oss (o200k_harmony): `<|end|>` ends a message, not the generation, when `<|return|>`
    // and `<|call|>` are present.
    let eog_has = |eog: &[u32], text: &str| token_to_id.get(text).is_some_and(|id| eog.binary_search(id).is_ok());
    if eog_has(&eog, "<|return|>")
        && eog_has(&eog, "<|call|>")
        && eog_has(&eog, "<|end|>")
        && let Some(&end) = token_to_id.get("<|end|>")
    {
        eog.retain(|&id| id != end);
        tokens[end as usize].attr = TokenAttr::USER_DEFINED;
    }

    eog
}

/// Special-token candidates, longest first. llama.cpp's sort is unstable; ties go by id here.
fn special_candidates(g: &Gguf, tokens: &mut [Token], token_to_id: &TokenIds) -> Vec<u32> {
    let special_attr = TokenAttr::CONTROL | TokenAttr::USER_DEFINED | TokenAttr::UNKNOWN;
    let mut specials: Vec<u32> =
        tokens.iter().enumerate().filter(|(_, t)| t.attr.intersects(special_attr)).map(|(i, _)| i as u32).collect();
    specials.sort_by_key(|&id| std::cmp::Reverse(tokens[id as usize].text.len()));

    // llama.cpp's fix for Phi-3 GGUFs: special tokens swallow the whitespace after them.
    if let Some(Value::String(name)) = g.metadata.get("general.name") {
        let name = name.to_lowercase();
        if name.contains("phi-3") || name.contains("phi3") {
            for &id in &specials {
                tokens[id as usize].attr |= TokenAttr::RSTRIP;
            }
            let mut set = |text: &str, on: bool| {
                if let Some(&id) = token_to_id.get(text) {
                    let t = &mut tokens[id as usize];
                    t.attr = if on { t.attr | TokenAttr::RSTRIP } else { t.attr.without(TokenAttr::RSTRIP) };
                }
            };
            set("</s>", true);
            for text in ["<unk>", "<s>", "<|endoftext|>"] {
                set(text, false);
            }
        }
    }

    specials
}

/// The model behind the vocabulary: BPE (with its pre-tokenizer `config`) or SentencePiece.
fn read_model(
    g: &Gguf,
    pre_config: Option<pre::PreConfig>,
    token_to_id: &TokenIds,
    roles: &Roles,
    n_tokens: usize,
) -> Result<Model, TokenizerError> {
    Ok(match pre_config {
        Some(config) => {
            let mut byte_token = Box::new([None; 256]);
            for (b, slot) in (0..=255u8).zip(byte_token.iter_mut()) {
                *slot = token_to_id.get(bytes::byte_to_char(b).to_string().as_str()).copied();
            }
            Model::Bpe {
                pre: pre::PreTokenizer::new(&config)?,
                ignore_merges: config.ignore_merges,
                merges: read_merges(g, token_to_id)?,
                byte_token,
            }
        }
        None => {
            let scores = match per_token(g, SCORES, n_tokens)? {
                None => vec![0.0; n_tokens],
                Some(items) => items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| v.as_f64().map(|s| s as f32).ok_or_else(|| element_error(SCORES, i, "a number", v)))
                    .collect::<Result<_, _>>()?,
            };
            // llama.cpp's `byte_to_token`: `<0xXX>`, else the byte as a one-character text, else
            // it throws; unknown is used here instead (or nothing, without one).
            let mut byte_token = Box::new([None; 256]);
            for (b, slot) in (0..=255u8).zip(byte_token.iter_mut()) {
                let hex = token_to_id.get(format!("<0x{b:02X}>").as_str());
                let plain = b.is_ascii().then(|| token_to_id.get(char::from(b).to_string().as_str())).flatten();
                *slot = hex.or(plain).copied().or(roles.get(Role::Unk));
            }
            Model::Spm { scores, byte_token }
        }
    })
}

/// Reads `tokenizer.ggml.merges` ("left right", rank = position) into id pairs. A merge must
/// name two tokens and make a third; a repeated pair keeps its first rank, as in llama.cpp.
fn read_merges(g: &Gguf, token_to_id: &TokenIds) -> Result<bpe::Merges, TokenizerError> {
    let items = array(g, MERGES)?.ok_or(TokenizerError::MissingKey(MERGES))?;
    let mut merges = bpe::Merges::default();
    merges.reserve(items.len());
    for (index, v) in items.iter().enumerate() {
        let Value::String(merge) = v else { return Err(element_error(MERGES, index, "a string", v)) };
        // llama.cpp splits at the first space after the first byte.
        let split = merge.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1);
        let (Some(left), Some(right)) = (split.and_then(|p| merge.get(..p)), split.and_then(|p| merge.get(p + 1..)))
        else {
            return Err(TokenizerError::MalformedMerge { index, merge: merge.clone() });
        };
        let find = |text: &str| {
            token_to_id.get(text).copied().ok_or_else(|| TokenizerError::MergeUnknownToken {
                index,
                merge: merge.clone(),
                token: text.to_string(),
            })
        };
        let (l, r, merged) = (find(left)?, find(right)?, find(&format!("{left}{right}"))?);
        let rank = u32::try_from(index).unwrap_or(u32::MAX);
        merges.entry(bpe::pair_key(l, r)).or_insert((rank, merged));
    }
    Ok(merges)
}
