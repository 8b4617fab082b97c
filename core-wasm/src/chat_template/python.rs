//! Python compatibility for templates written against Jinja2: values printed as Python's
//! `str()`, and the `str`, `dict` and `list` methods templates call (`.strip()`, `.items()`, …).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;

use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Tuple, Value, ValueKind, from_args};
use minijinja::{Error, ErrorKind, Output, State};

/// A map that keeps insertion order whatever minijinja's own maps do.
#[derive(Debug)]
pub(super) struct OrderedMap(pub(super) Vec<(Value, Value)>);

impl Object for OrderedMap {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.0.iter().map(|(k, _)| k.clone()).collect())
    }
}

/// Prints values as Jinja2 does, which is Python's `str()`: `None`, `True`, `['a', 1]`.
pub(super) fn python_formatter(out: &mut Output, state: &mut State, value: &Value) -> Result<(), Error> {
    match value.kind() {
        ValueKind::None | ValueKind::Bool | ValueKind::Number | ValueKind::Seq | ValueKind::Map => {
            out.write_str(&py_str(value)).map_err(|_| Error::from(ErrorKind::WriteFailure))
        }
        // Strings as they are; undefined and invalid values get minijinja's own handling.
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// Python's `str(value)`.
pub(super) fn py_str(value: &Value) -> String {
    match value.kind() {
        ValueKind::Undefined => String::new(),
        ValueKind::String => value.as_str().unwrap_or_default().to_owned(),
        _ => py_repr(value),
    }
}

/// Python's `repr(value)`, for what Jinja2 prints of containers.
fn py_repr(value: &Value) -> String {
    match value.kind() {
        ValueKind::Undefined => "Undefined".into(),
        ValueKind::None => "None".into(),
        ValueKind::Bool => if value.is_true() { "True" } else { "False" }.into(),
        ValueKind::Number if !value.is_integer() => match f64::try_from(value.clone()) {
            Ok(f) => py_float_repr(f),
            Err(_) => value.to_string(),
        },
        ValueKind::String => py_repr_str(value.as_str().unwrap_or_default()),
        ValueKind::Seq => {
            let items: Vec<String> = match value.try_iter() {
                Ok(iter) => iter.map(|v| py_repr(&v)).collect(),
                Err(_) => Vec::new(),
            };
            if value.is_tuple() {
                if items.len() == 1 { format!("({},)", items[0]) } else { format!("({})", items.join(", ")) }
            } else {
                format!("[{}]", items.join(", "))
            }
        }
        ValueKind::Map => {
            let pairs = value.as_object().and_then(|o| o.try_iter_pairs());
            let items: Vec<String> =
                pairs.into_iter().flatten().map(|(k, v)| format!("{}: {}", py_repr(&k), py_repr(&v))).collect();
            format!("{{{}}}", items.join(", "))
        }
        _ => value.to_string(),
    }
}

/// Python's `repr(str)`: single quotes unless the text has one and no double quote.
fn py_repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !py_printable(c) => {
                let n = u32::from(c);
                let _ = match n {
                    0..=0xff => write!(out, "\\x{n:02x}"),
                    0x100..=0xffff => write!(out, "\\u{n:04x}"),
                    _ => write!(out, "\\U{n:08x}"),
                };
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Close to Python's `str.isprintable` for one character: controls, separators other than the
/// space, and the common invisible format characters are not printable.
fn py_printable(c: char) -> bool {
    c == ' '
        || !(c.is_control()
            || c.is_whitespace()
            || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}'))
}

/// Python's `repr(float)`: the shortest round-trip digits, positional from 1e-4 up to 1e16,
/// scientific (`1e+16`, `1e-05`) outside.
pub(super) fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` prints the shortest digits that round-trip, as Python's repr does.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if f < 0.0 { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let point = exp + 1;
        if point <= 0 {
            format!("{sign}0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
        } else {
            let point = point as usize;
            if point >= digits.len() {
                format!("{sign}{digits}{}.0", "0".repeat(point - digits.len()))
            } else {
                format!("{sign}{}.{}", &digits[..point], &digits[point..])
            }
        }
    } else {
        let mantissa = if digits.len() == 1 { digits } else { format!("{}.{}", &digits[..1], &digits[1..]) };
        format!("{sign}{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    }
}

/// Python's whitespace (`str.isspace`): Unicode's plus the four ASCII separators 0x1c..0x1f.
fn py_space(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{1c}'..='\u{1f}')
}

/// Python methods on strings, dicts and lists, for minijinja's unknown-method callback.
pub(super) fn python_method(_state: &mut State, value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    match value.kind() {
        ValueKind::String => str_method(value.as_str().unwrap_or_default(), method, args),
        ValueKind::Map => map_method(value, method, args),
        ValueKind::Seq => seq_method(value, method, args),
        _ => Err(Error::from(ErrorKind::UnknownMethod)),
    }
}

/// `chars` for strip/lstrip/rstrip: None (or none) means whitespace.
fn strip_set(args: &[Value]) -> Result<Option<Vec<char>>, Error> {
    let (chars,): (Option<Value>,) = from_args(args)?;
    match chars {
        Some(c) if !c.is_none() => {
            let c = c.as_str().ok_or_else(|| invalid("strip arg must be None or str"))?;
            Ok(Some(c.chars().collect()))
        }
        _ => Ok(None),
    }
}

pub(super) fn invalid(message: impl Into<Cow<'static, str>>) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

/// A `startswith`/`endswith` argument: a string or a tuple (list) of strings.
fn affixes(arg: &Value, method: &str) -> Result<Vec<String>, Error> {
    if let Some(s) = arg.as_str() {
        return Ok(vec![s.to_owned()]);
    }
    let mut out = Vec::new();
    for item in arg.try_iter().map_err(|_| invalid(format!("{method} first arg must be str or a tuple of str")))? {
        out.push(item.as_str().ok_or_else(|| invalid(format!("tuple for {method} must only contain str")))?.to_owned());
    }
    Ok(out)
}

fn str_method(s: &str, method: &str, args: &[Value]) -> Result<Value, Error> {
    let no_args = |args: &[Value]| from_args::<()>(args);
    Ok(match method {
        "strip" => Value::from(match strip_set(args)? {
            Some(set) => s.trim_matches(set.as_slice()),
            None => s.trim_matches(py_space),
        }),
        "lstrip" => Value::from(match strip_set(args)? {
            Some(set) => s.trim_start_matches(set.as_slice()),
            None => s.trim_start_matches(py_space),
        }),
        "rstrip" => Value::from(match strip_set(args)? {
            Some(set) => s.trim_end_matches(set.as_slice()),
            None => s.trim_end_matches(py_space),
        }),
        "startswith" | "endswith" => {
            let (arg,): (&Value,) = from_args(args)?;
            let list = affixes(arg, method)?;
            Value::from(if method == "startswith" {
                list.iter().any(|p| s.starts_with(p.as_str()))
            } else {
                list.iter().any(|p| s.ends_with(p.as_str()))
            })
        }
        "split" | "rsplit" => {
            let (positional, kwargs): (&[Value], Kwargs) = from_args(args)?;
            let sep = match positional.first() {
                Some(v) => Some(v.clone()),
                None => kwargs.get::<Option<Value>>("sep")?,
            };
            let maxsplit = match positional.get(1) {
                Some(v) => Some(i64::try_from(v.clone())?),
                None => kwargs.get::<Option<i64>>("maxsplit")?,
            };
            if positional.len() > 2 {
                return Err(Error::from(ErrorKind::TooManyArguments));
            }
            kwargs.assert_all_used()?;
            let maxsplit = maxsplit.and_then(|m| usize::try_from(m).ok());
            let parts = match sep.filter(|v| !v.is_none()) {
                None => split_whitespace(s, maxsplit, method == "rsplit"),
                Some(sep) => {
                    let sep = sep.as_str().ok_or_else(|| invalid("must be str or None"))?;
                    if sep.is_empty() {
                        return Err(invalid("empty separator"));
                    }
                    match (maxsplit, method == "rsplit") {
                        (None, _) => s.split(sep).collect(),
                        (Some(n), false) => s.splitn(n.saturating_add(1), sep).collect(),
                        (Some(n), true) => {
                            let mut parts: Vec<&str> = s.rsplitn(n.saturating_add(1), sep).collect();
                            parts.reverse();
                            parts
                        }
                    }
                }
            };
            parts.into_iter().map(Value::from).collect()
        }
        "splitlines" => {
            let (keepends,): (Option<bool>,) = from_args(args)?;
            splitlines(s, keepends.unwrap_or(false)).into_iter().map(Value::from).collect()
        }
        "upper" => {
            no_args(args)?;
            Value::from(s.to_uppercase())
        }
        "lower" => {
            no_args(args)?;
            Value::from(s.to_lowercase())
        }
        "title" => {
            no_args(args)?;
            Value::from(py_title(s))
        }
        "capitalize" => {
            no_args(args)?;
            let mut chars = s.chars();
            Value::from(match chars.next() {
                Some(first) => first.to_uppercase().chain(chars.flat_map(char::to_lowercase)).collect::<String>(),
                None => String::new(),
            })
        }
        "replace" => {
            let (old, new, count): (&str, &str, Option<i64>) = from_args(args)?;
            Value::from(match count.and_then(|c| usize::try_from(c).ok()) {
                Some(n) => s.replacen(old, new, n),
                None => s.replace(old, new),
            })
        }
        "removeprefix" => {
            let (prefix,): (&str,) = from_args(args)?;
            Value::from(s.strip_prefix(prefix).unwrap_or(s))
        }
        "removesuffix" => {
            let (suffix,): (&str,) = from_args(args)?;
            Value::from(s.strip_suffix(suffix).unwrap_or(s))
        }
        "find" | "rfind" | "index" | "rindex" => {
            let (needle,): (&str,) = from_args(args)?;
            let at = if method.starts_with('r') { s.rfind(needle) } else { s.find(needle) };
            match at {
                // Python counts characters, not bytes.
                Some(at) => Value::from(s[..at].chars().count()),
                None if method.ends_with("find") => Value::from(-1),
                None => return Err(invalid("substring not found")),
            }
        }
        "count" => {
            let (needle,): (&str,) = from_args(args)?;
            Value::from(if needle.is_empty() { s.chars().count() + 1 } else { s.matches(needle).count() })
        }
        "join" => {
            let (items,): (&Value,) = from_args(args)?;
            let items: Vec<String> = items.try_iter()?.map(|v| py_str(&v)).collect();
            Value::from(items.join(s))
        }
        "format" => Value::from(minijinja::formatting::format(minijinja::formatting::FormatStyle::StrFormat, s, args)?),
        "isdigit" | "isnumeric" | "isdecimal" => {
            no_args(args)?;
            Value::from(!s.is_empty() && s.chars().all(char::is_numeric))
        }
        "isalpha" => {
            no_args(args)?;
            Value::from(!s.is_empty() && s.chars().all(char::is_alphabetic))
        }
        "isalnum" => {
            no_args(args)?;
            Value::from(!s.is_empty() && s.chars().all(char::is_alphanumeric))
        }
        "isspace" => {
            no_args(args)?;
            Value::from(!s.is_empty() && s.chars().all(py_space))
        }
        "islower" => {
            no_args(args)?;
            Value::from(s.chars().any(char::is_lowercase) && !s.chars().any(char::is_uppercase))
        }
        "isupper" => {
            no_args(args)?;
            Value::from(s.chars().any(char::is_uppercase) && !s.chars().any(char::is_lowercase))
        }
        _ => return Err(Error::from(ErrorKind::UnknownMethod)),
    })
}

/// Python's `str.split()` / `str.rsplit()` without a separator: runs of whitespace separate,
/// and no empty strings come out.
fn split_whitespace(s: &str, maxsplit: Option<usize>, from_right: bool) -> Vec<&str> {
    let mut parts = Vec::new();
    if from_right {
        let mut rest = s.trim_end_matches(py_space);
        while !rest.is_empty() {
            if maxsplit == Some(parts.len()) {
                parts.push(rest);
                break;
            }
            match rest.rfind(py_space) {
                Some(at) => {
                    let width = rest[at..].chars().next().map_or(1, char::len_utf8);
                    parts.push(&rest[at + width..]);
                    rest = rest[..at].trim_end_matches(py_space);
                }
                None => {
                    parts.push(rest);
                    break;
                }
            }
        }
        parts.reverse();
    } else {
        let mut rest = s.trim_start_matches(py_space);
        while !rest.is_empty() {
            if maxsplit == Some(parts.len()) {
                parts.push(rest);
                break;
            }
            match rest.find(py_space) {
                Some(at) => {
                    parts.push(&rest[..at]);
                    rest = rest[at..].trim_start_matches(py_space);
                }
                None => {
                    parts.push(rest);
                    break;
                }
            }
        }
    }
    parts
}

/// Python's `str.splitlines`, with its line boundaries (`\r\n` counts once).
fn splitlines(s: &str, keepends: bool) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let is_break = matches!(
            c,
            '\n' | '\r' | '\u{b}' | '\u{c}' | '\u{1c}' | '\u{1d}' | '\u{1e}' | '\u{85}' | '\u{2028}' | '\u{2029}'
        );
        if !is_break {
            continue;
        }
        let mut end = at + c.len_utf8();
        if c == '\r' && chars.peek().is_some_and(|&(_, next)| next == '\n') {
            chars.next();
            end += 1;
        }
        lines.push(if keepends { &s[start..end] } else { &s[start..at] });
        start = end;
    }
    if start < s.len() {
        lines.push(&s[start..]);
    }
    lines
}

/// Python's `str.title`: a cased character after an uncased one starts a word.
fn py_title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut previous_cased = false;
    for c in s.chars() {
        if c.is_uppercase() || c.is_lowercase() {
            if previous_cased {
                out.extend(c.to_lowercase());
            } else {
                out.extend(c.to_uppercase());
            }
            previous_cased = true;
        } else {
            out.push(c);
            previous_cased = false;
        }
    }
    out
}

fn map_method(value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    let Some(obj) = value.as_object() else {
        return Err(Error::from(ErrorKind::UnknownMethod));
    };
    let pairs = || obj.try_iter_pairs().into_iter().flatten();
    Ok(match method {
        "items" => {
            from_args::<()>(args)?;
            pairs().map(|(k, v)| Value::from(Tuple::from([k, v]))).collect()
        }
        "keys" => {
            from_args::<()>(args)?;
            pairs().map(|(k, _)| k).collect()
        }
        "values" => {
            from_args::<()>(args)?;
            pairs().map(|(_, v)| v).collect()
        }
        "get" => {
            let (key, default): (&Value, Option<Value>) = from_args(args)?;
            match obj.get_value(key) {
                Some(v) if !v.is_undefined() => v,
                _ => default.unwrap_or(Value::from(())),
            }
        }
        _ => return Err(Error::from(ErrorKind::UnknownMethod)),
    })
}

fn seq_method(value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    Ok(match method {
        "count" => {
            let (needle,): (&Value,) = from_args(args)?;
            Value::from(value.try_iter()?.filter(|v| v == needle).count())
        }
        "index" => {
            let (needle,): (&Value,) = from_args(args)?;
            match value.try_iter()?.position(|v| v == *needle) {
                Some(at) => Value::from(at),
                None => return Err(invalid("value is not in list")),
            }
        }
        _ => return Err(Error::from(ErrorKind::UnknownMethod)),
    })
}
