//! The canonical, unambiguous byte encodings that are hashed and signed (docs/FORMAT.md §16).
//!
//! * Integers are fixed-width little-endian (`u64`, `i64`).
//! * A string is `u64 length ‖ UTF-8 bytes`; an optional string is `0x00` (absent) or
//!   `0x01 ‖ string`.
//! * `details` is the string of its canonical JSON ([`canonical_json`]).
//!
//! Every field has a fixed position and every variable-length field a length prefix, so two
//! different events never encode to the same bytes.

use std::fmt::Write as _;

use serde_json::{Number, Value};

use crate::AuditEvent;

/// Appends `v` as 8 little-endian bytes.
pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends `v` as 8 little-endian bytes (two's complement).
pub(crate) fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends `u64 length ‖ bytes`.
pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Appends `0x00` or `0x01 ‖ u64 length ‖ bytes`.
fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

/// The canonical bytes of an event, in this order: `time` (i64), `tenant` (optional string),
/// `actor`, `action` code, `target`, `outcome` code (strings), `source` (optional string),
/// `details` (the string of its canonical JSON).
pub fn canonical_bytes(event: &AuditEvent) -> Vec<u8> {
    let details = canonical_json(&event.details);
    let mut out = Vec::with_capacity(
        64 + event.actor.len()
            + event.target.len()
            + details.len()
            + event.tenant.as_ref().map_or(0, String::len)
            + event.source.as_ref().map_or(0, String::len),
    );
    put_i64(&mut out, event.time);
    put_opt_str(&mut out, event.tenant.as_deref());
    put_str(&mut out, &event.actor);
    put_str(&mut out, event.action.code());
    put_str(&mut out, &event.target);
    put_str(&mut out, event.outcome.code());
    put_opt_str(&mut out, event.source.as_deref());
    put_str(&mut out, &details);
    out
}

/// The canonical JSON text of a value: no whitespace, object members sorted by the bytes of
/// their UTF-8 keys, strings escaped minimally, numbers in one spelling.
///
/// * Strings: `"` and `\` are escaped as `\"` and `\\`; U+0008, U+0009, U+000A, U+000C,
///   U+000D as `\b`, `\t`, `\n`, `\f`, `\r`; the other characters below U+0020 as `\u00xx`
///   (lowercase hex); everything else is written as itself in UTF-8.
/// * Numbers: an integer that fits in `i64` or `u64` is written in decimal. Any other number
///   (a float) is written as ECMAScript's `Number.prototype.toString` writes the shortest
///   decimal that reads back as the same `f64` (as RFC 8785 does); so `100.0` is `100`, `-0.0`
///   is `0`, `1e21` is `1e+21`, `1e-7` is `1e-7`.
///
/// The result does not depend on how the value was parsed or built (key order, `preserve_order`,
/// `1.0` or `1e0`), so a value stored as JSON text by any database and read back hashes the same.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, k);
                out.push(':');
                write_value(out, v);
            }
            out.push('}');
        }
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_number(out: &mut String, n: &Number) {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(f) = n.as_f64() {
        write_f64(out, f);
    } else {
        // Unreachable without serde_json's `arbitrary_precision`; with it, a number too large
        // for f64 keeps its spelling.
        let _ = write!(out, "{n}");
    }
}

/// ECMAScript `Number::toString` of a finite `f64` (NaN and infinities cannot occur in JSON).
fn write_f64(out: &mut String, f: f64) {
    if f == 0.0 {
        out.push('0');
        return;
    }
    if !f.is_finite() {
        out.push_str("null");
        return;
    }
    if f < 0.0 {
        out.push('-');
    }
    // Rust's `{:e}` gives the shortest round-tripping digits: `d[.ddd]e[-]x`.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exp: i64 = exp.parse().unwrap_or(0);
    let k = digits.len() as i64;
    // ECMAScript's n: the value is 0.d1d2…dk × 10^n.
    let n = exp + 1;
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        out.push_str(&digits[..n as usize]);
        out.push('.');
        out.push_str(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if n > 0 { '+' } else { '-' });
        let _ = write!(out, "{}", (n - 1).abs());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{AuditAction, Outcome};

    fn f(x: f64) -> String {
        let mut s = String::new();
        write_f64(&mut s, x);
        s
    }

    #[test]
    fn floats_follow_ecmascript() {
        for (x, want) in [
            (100.0, "100"),
            (-0.0, "0"),
            (0.5, "0.5"),
            (-1.25, "-1.25"),
            (0.1, "0.1"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (123456789012.5, "123456789012.5"),
            (1e-6, "0.000001"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (1.2345e300, "1.2345e+300"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (0.000123, "0.000123"),
        ] {
            assert_eq!(f(x), want, "{x}");
        }
    }

    #[test]
    fn numbers_have_one_spelling() {
        for text in ["100", "100.0", "1e2", "1.00e+2", "100.000"] {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(canonical_json(&v), "100", "{text}");
        }
        let v: Value = serde_json::from_str("18446744073709551615").unwrap();
        assert_eq!(canonical_json(&v), "18446744073709551615");
        let v: Value = serde_json::from_str("-9223372036854775808").unwrap();
        assert_eq!(canonical_json(&v), "-9223372036854775808");
    }

    #[test]
    fn objects_sorted_and_strings_escaped() {
        let a: Value =
            serde_json::from_str(r#"{"b":1,"a":[true,null,"x"],"aa":{"z":0,"y":-1}}"#).unwrap();
        assert_eq!(
            canonical_json(&a),
            r#"{"a":[true,null,"x"],"aa":{"y":-1,"z":0},"b":1}"#
        );
        let s = json!("q\"b\\n\n\t\r\u{8}\u{c}\u{1}\u{1f}é中\u{7f}/");
        assert_eq!(
            canonical_json(&s),
            "\"q\\\"b\\\\n\\n\\t\\r\\b\\f\\u0001\\u001fé中\u{7f}/\""
        );
        // Canonical JSON is valid JSON that parses back to the same value.
        let back: Value = serde_json::from_str(&canonical_json(&s)).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn event_encoding_is_fixed() {
        let e = AuditEvent::new(1, "a", AuditAction::Login, "t", Outcome::Success)
            .with_details(json!({"k": 2}));
        let b = canonical_bytes(&e);
        let mut want = Vec::new();
        want.extend_from_slice(&1i64.to_le_bytes());
        want.push(0);
        want.extend_from_slice(&1u64.to_le_bytes());
        want.extend_from_slice(b"a");
        want.extend_from_slice(&5u64.to_le_bytes());
        want.extend_from_slice(b"login");
        want.extend_from_slice(&1u64.to_le_bytes());
        want.extend_from_slice(b"t");
        want.extend_from_slice(&7u64.to_le_bytes());
        want.extend_from_slice(b"success");
        want.push(0);
        want.extend_from_slice(&7u64.to_le_bytes());
        want.extend_from_slice(br#"{"k":2}"#);
        assert_eq!(b, want);
        // Null details are the string `null`; an absent and an empty tenant differ.
        let e0 = AuditEvent::new(1, "a", AuditAction::Login, "t", Outcome::Success);
        assert!(canonical_bytes(&e0).ends_with(b"null"));
        let e1 = e0.clone().with_tenant("");
        assert_ne!(canonical_bytes(&e0), canonical_bytes(&e1));
    }
}
