//! `tojson` as transformers defines it: Python's `json.dumps`, not Jinja's HTML-safe filter.

use std::fmt::Write as _;

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Error, ErrorKind};

use super::python::{invalid, py_float_repr, py_str};

/// Deepest nesting `tojson` follows, so a hostile value cannot exhaust the stack.
const MAX_JSON_DEPTH: usize = 128;

/// How `json.dumps` was asked to write.
struct JsonStyle {
    ensure_ascii: bool,
    indent: Option<String>,
    item_separator: String,
    key_separator: String,
    sort_keys: bool,
}

/// `tojson` as transformers defines it:
/// `json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`, taking
/// those arguments by position or by name. Unlike Jinja's own, it escapes nothing for HTML.
pub(super) fn tojson_filter(value: &Value, positional: &[Value], kwargs: Kwargs) -> Result<Value, Error> {
    const NAMES: [&str; 4] = ["ensure_ascii", "indent", "separators", "sort_keys"];
    if positional.len() > NAMES.len() {
        return Err(Error::from(ErrorKind::TooManyArguments));
    }
    let mut args: [Value; 4] = Default::default();
    for (i, name) in NAMES.iter().enumerate() {
        if let Some(v) = kwargs.get::<Option<Value>>(name)? {
            if i < positional.len() {
                return Err(invalid(format!("tojson got multiple values for argument {name:?}")));
            }
            args[i] = v;
        } else if let Some(v) = positional.get(i) {
            args[i] = v.clone();
        }
    }
    kwargs.assert_all_used()?;
    let [ensure_ascii, indent, separators, sort_keys] = args;
    let indent = match indent.kind() {
        ValueKind::Undefined | ValueKind::None => None,
        ValueKind::String => indent.as_str().map(str::to_owned),
        _ => {
            let n = i64::try_from(indent)?;
            Some(" ".repeat(usize::try_from(n).unwrap_or(0).min(1024)))
        }
    };
    let (item_separator, key_separator) = match separators.kind() {
        ValueKind::Undefined | ValueKind::None => {
            (if indent.is_some() { "," } else { ", " }.to_owned(), ": ".to_owned())
        }
        _ => {
            let parts: Vec<Value> = separators.try_iter()?.collect();
            match parts.as_slice() {
                [item, key] => (
                    item.as_str().ok_or_else(|| invalid("tojson separators must be strings"))?.to_owned(),
                    key.as_str().ok_or_else(|| invalid("tojson separators must be strings"))?.to_owned(),
                ),
                _ => return Err(invalid("tojson separators must be a pair (item, key)")),
            }
        }
    };
    let style = JsonStyle {
        ensure_ascii: ensure_ascii.is_true(),
        indent,
        item_separator,
        key_separator,
        sort_keys: sort_keys.is_true(),
    };
    let mut out = String::new();
    write_json(&mut out, value, &style, 0)?;
    Ok(Value::from(out))
}

fn write_json(out: &mut String, value: &Value, style: &JsonStyle, depth: usize) -> Result<(), Error> {
    if depth > MAX_JSON_DEPTH {
        return Err(invalid("tojson: the value nests too deeply"));
    }
    match value.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number if value.is_integer() => {
            let _ = write!(out, "{value}");
        }
        ValueKind::Number => {
            let f = f64::try_from(value.clone())?;
            out.push_str(&match py_float_repr(f).as_str() {
                "nan" => "NaN".to_owned(),
                "inf" => "Infinity".to_owned(),
                "-inf" => "-Infinity".to_owned(),
                other => other.to_owned(),
            });
        }
        ValueKind::String => write_json_str(out, value.as_str().unwrap_or_default(), style.ensure_ascii),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            write_json_container(out, '[', ']', items.len(), style, depth, |out, i| {
                write_json(out, &items[i], style, depth + 1)
            })?;
        }
        ValueKind::Map => {
            let mut pairs: Vec<(String, Value)> = Vec::new();
            for (k, v) in value.as_object().and_then(|o| o.try_iter_pairs()).into_iter().flatten() {
                pairs.push((json_key(&k)?, v));
            }
            if style.sort_keys {
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
            }
            write_json_container(out, '{', '}', pairs.len(), style, depth, |out, i| {
                write_json_str(out, &pairs[i].0, style.ensure_ascii);
                out.push_str(&style.key_separator);
                write_json(out, &pairs[i].1, style, depth + 1)
            })?;
        }
        kind => return Err(invalid(format!("tojson: object of type {kind} is not JSON serializable"))),
    }
    Ok(())
}

fn write_json_container(
    out: &mut String,
    open: char,
    close: char,
    len: usize,
    style: &JsonStyle,
    depth: usize,
    mut item: impl FnMut(&mut String, usize) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(open);
    if len == 0 {
        out.push(close);
        return Ok(());
    }
    for i in 0..len {
        if i > 0 {
            out.push_str(&style.item_separator);
        }
        if let Some(indent) = &style.indent {
            out.push('\n');
            out.push_str(&indent.repeat(depth + 1));
        }
        item(out, i)?;
    }
    if let Some(indent) = &style.indent {
        out.push('\n');
        out.push_str(&indent.repeat(depth));
    }
    out.push(close);
    Ok(())
}

/// Python's rule for dict keys in JSON: strings as they are, scalars converted.
fn json_key(key: &Value) -> Result<String, Error> {
    Ok(match key.kind() {
        ValueKind::String => key.as_str().unwrap_or_default().to_owned(),
        ValueKind::None => "null".to_owned(),
        ValueKind::Bool => if key.is_true() { "true" } else { "false" }.to_owned(),
        ValueKind::Number => py_str(key),
        kind => return Err(invalid(format!("tojson: keys must be str, int, float, bool or None, not {kind}"))),
    })
}

fn write_json_str(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 || (ensure_ascii && !c.is_ascii()) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
