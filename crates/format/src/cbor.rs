//! A small, strict CBOR (RFC 8949) codec limited to what zaibei's objects use.
//!
//! Encoding is always deterministic (RFC 8949 §4.2.1, "core deterministic encoding"):
//! integers and lengths in their shortest form, definite lengths only, and map entries sorted by
//! the bytewise order of their encoded keys. Decoding is strict: it accepts exactly the encodings
//! this encoder produces, so that every value has one encoding and an object's id is stable.
//! Rejected: floats, tags, `undefined`, indefinite lengths, non-shortest integers and lengths,
//! unsorted or duplicate map keys, invalid UTF-8 in text strings, nesting deeper than
//! [`MAX_DEPTH`], and trailing bytes. Nothing in the decoder panics or allocates more than the
//! input could describe.

use std::fmt;

use thiserror::Error;

/// Deepest nesting of arrays and maps accepted by the decoder.
pub const MAX_DEPTH: usize = 32;

/// A CBOR data item of the subset zaibei uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Unsigned integer (major type 0).
    Uint(u64),
    /// Negative integer `-1 - n` (major type 1), holding `n`.
    Nint(u64),
    /// Byte string (major type 2).
    Bytes(Vec<u8>),
    /// UTF-8 text string (major type 3).
    Text(String),
    /// Array (major type 4).
    Array(Vec<Value>),
    /// Map (major type 5). The encoder sorts the entries; the decoder returns them sorted.
    Map(Vec<(Value, Value)>),
    /// `false` or `true` (simple values 20 and 21).
    Bool(bool),
    /// `null` (simple value 22).
    Null,
}

/// Why a byte string is not a valid CBOR item of zaibei's subset.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CborError {
    /// The input ended inside an item.
    #[error("unexpected end of input at byte {0}")]
    UnexpectedEnd(usize),
    /// Bytes remain after the top-level item.
    #[error("{0} trailing bytes after the item")]
    TrailingBytes(usize),
    /// A construct outside the accepted subset (floats, tags, indefinite lengths...).
    #[error("unsupported CBOR construct at byte {offset}: {what}")]
    Unsupported {
        /// Byte offset of the construct.
        offset: usize,
        /// What was found.
        what: &'static str,
    },
    /// An integer or length not in its shortest form.
    #[error("non-canonical integer or length at byte {0}")]
    NonCanonical(usize),
    /// Map keys out of order or repeated.
    #[error("map keys not in canonical order, or duplicated, at byte {0}")]
    UnsortedKeys(usize),
    /// A text string that is not UTF-8.
    #[error("invalid UTF-8 in text string at byte {0}")]
    InvalidUtf8(usize),
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

impl Value {
    /// Shorthand for a text value.
    pub fn text(s: &str) -> Value {
        Value::Text(s.to_owned())
    }

    /// A signed integer as the right major type.
    pub fn int(i: i64) -> Value {
        if i >= 0 {
            Value::Uint(i as u64)
        } else {
            Value::Nint(!(i as u64))
        }
    }

    /// A short description of the kind of value, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Uint(_) => "unsigned integer",
            Value::Nint(_) => "negative integer",
            Value::Bytes(_) => "byte string",
            Value::Text(_) => "text string",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
            Value::Bool(_) => "bool",
            Value::Null => "null",
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind())
    }
}

/// Encodes `value` deterministically.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    encode_into(value, &mut out);
    out
}

/// Appends the deterministic encoding of `value` to `out`.
pub fn encode_into(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Uint(n) => write_head(out, 0, *n),
        Value::Nint(n) => write_head(out, 1, *n),
        Value::Bytes(b) => {
            write_head(out, 2, b.len() as u64);
            out.extend_from_slice(b);
        }
        Value::Text(s) => {
            write_head(out, 3, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Array(items) => {
            write_head(out, 4, items.len() as u64);
            for item in items {
                encode_into(item, out);
            }
        }
        Value::Map(entries) => {
            write_head(out, 5, entries.len() as u64);
            let mut encoded: Vec<(Vec<u8>, &Value)> =
                entries.iter().map(|(k, v)| (encode(k), v)).collect();
            encoded.sort_by(|a, b| a.0.cmp(&b.0));
            for (k, v) in encoded {
                out.extend_from_slice(&k);
                encode_into(v, out);
            }
        }
        Value::Bool(false) => out.push(0xf4),
        Value::Bool(true) => out.push(0xf5),
        Value::Null => out.push(0xf6),
    }
}

/// Appends the head of an item of major type `major` with argument `n`, in its shortest form.
pub(crate) fn write_head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= u64::from(u8::MAX) {
        out.push(m | 24);
        out.push(n as u8);
    } else if n <= u64::from(u16::MAX) {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= u64::from(u32::MAX) {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Decodes exactly one item that must span all of `input`.
pub fn decode(input: &[u8]) -> Result<Value, CborError> {
    let mut d = Decoder::new(input);
    let v = d.item(0)?;
    d.finish()?;
    Ok(v)
}

/// A cursor over CBOR bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Decoder { input, pos: 0 }
    }

    fn byte(&mut self) -> Result<u8, CborError> {
        let b = *self
            .input
            .get(self.pos)
            .ok_or(CborError::UnexpectedEnd(self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], CborError> {
        let remaining = (self.input.len() - self.pos) as u64;
        if n > remaining {
            return Err(CborError::UnexpectedEnd(self.input.len()));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.input[start..self.pos])
    }

    /// Reads the argument of a head whose additional information is `info`.
    fn argument(&mut self, info: u8, at: usize) -> Result<u64, CborError> {
        let (n, min) = match info {
            0..=23 => return Ok(u64::from(info)),
            24 => (u64::from(self.byte()?), 24),
            25 => {
                let b = self.take(2)?;
                (u64::from(u16::from_be_bytes([b[0], b[1]])), 1 << 8)
            }
            26 => {
                let b = self.take(4)?;
                (
                    u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
                    1 << 16,
                )
            }
            27 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                (u64::from_be_bytes(a), 1 << 32)
            }
            31 => {
                return Err(CborError::Unsupported {
                    offset: at,
                    what: "indefinite length",
                });
            }
            _ => {
                return Err(CborError::Unsupported {
                    offset: at,
                    what: "reserved additional information",
                });
            }
        };
        if n < min {
            return Err(CborError::NonCanonical(at));
        }
        Ok(n)
    }

    /// The number of items a container claims, bounded by the bytes left (each item takes at
    /// least one byte), so a hostile length cannot make us allocate.
    fn count(&mut self, n: u64, per_item: u64) -> Result<usize, CborError> {
        let remaining = (self.input.len() - self.pos) as u64;
        if n.saturating_mul(per_item) > remaining {
            return Err(CborError::UnexpectedEnd(self.input.len()));
        }
        Ok(n as usize)
    }

    /// Reads the head of the next item: its major type, its argument (for major type 7 the
    /// simple value: 20, 21 or 22) and its offset. Tags, floats and other simple values are
    /// refused here.
    fn raw_head(&mut self) -> Result<(u8, u64, usize), CborError> {
        let at = self.pos;
        let initial = self.byte()?;
        let major = initial >> 5;
        let info = initial & 0x1f;
        match major {
            0..=5 => Ok((major, self.argument(info, at)?, at)),
            6 => Err(CborError::Unsupported {
                offset: at,
                what: "tag",
            }),
            _ => match info {
                20..=22 => Ok((7, u64::from(info), at)),
                25..=27 => Err(CborError::Unsupported {
                    offset: at,
                    what: "floating-point number",
                }),
                _ => Err(CborError::Unsupported {
                    offset: at,
                    what: "simple value",
                }),
            },
        }
    }

    fn text(&mut self, n: u64, at: usize) -> Result<&'a str, CborError> {
        std::str::from_utf8(self.take(n)?).map_err(|_| CborError::InvalidUtf8(at))
    }

    fn item(&mut self, depth: usize) -> Result<Value, CborError> {
        if depth > MAX_DEPTH {
            return Err(CborError::TooDeep);
        }
        let (major, arg, at) = self.raw_head()?;
        match major {
            0 => Ok(Value::Uint(arg)),
            1 => Ok(Value::Nint(arg)),
            2 => Ok(Value::Bytes(self.take(arg)?.to_vec())),
            3 => Ok(Value::Text(self.text(arg, at)?.to_owned())),
            4 => {
                let n = self.count(arg, 1)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.item(depth + 1)?);
                }
                Ok(Value::Array(items))
            }
            5 => {
                let n = self.count(arg, 2)?;
                let mut entries = Vec::with_capacity(n);
                let mut prev_key: Option<&[u8]> = None;
                for _ in 0..n {
                    let key_start = self.pos;
                    let k = self.item(depth + 1)?;
                    self.check_key_order(&mut prev_key, key_start)?;
                    let v = self.item(depth + 1)?;
                    entries.push((k, v));
                }
                Ok(Value::Map(entries))
            }
            _ => Ok(match arg {
                20 => Value::Bool(false),
                21 => Value::Bool(true),
                _ => Value::Null,
            }),
        }
    }

    /// Checks that the map key just read (from `key_start` to here) sorts after the previous.
    pub(crate) fn check_key_order(
        &self,
        prev_key: &mut Option<&'a [u8]>,
        key_start: usize,
    ) -> Result<(), CborError> {
        let key = &self.input[key_start..self.pos];
        if prev_key.is_some_and(|prev| prev >= key) {
            return Err(CborError::UnsortedKeys(key_start));
        }
        *prev_key = Some(key);
        Ok(())
    }

    /// Reads the next map key at nesting `depth`, checking its order after `prev_key`: a text
    /// key is returned, any other key is skipped (objects only look up text keys).
    pub(crate) fn read_key(
        &mut self,
        depth: usize,
        prev_key: &mut Option<&'a [u8]>,
    ) -> Result<Option<&'a str>, CborError> {
        if depth > MAX_DEPTH {
            return Err(CborError::TooDeep);
        }
        let key_start = self.pos;
        let mut ahead = *self;
        let key = match ahead.read_head() {
            Ok(Head::Text(text)) => {
                *self = ahead;
                Some(text)
            }
            _ => {
                self.skip(depth)?;
                None
            }
        };
        self.check_key_order(prev_key, key_start)?;
        Ok(key)
    }

    /// Skips the next item at nesting `depth`, checking it as [`decode`] would.
    pub(crate) fn skip(&mut self, depth: usize) -> Result<(), CborError> {
        if depth > MAX_DEPTH {
            return Err(CborError::TooDeep);
        }
        let (major, arg, at) = self.raw_head()?;
        match major {
            2 => {
                self.take(arg)?;
            }
            3 => {
                self.text(arg, at)?;
            }
            4 => {
                for _ in 0..self.count(arg, 1)? {
                    self.skip(depth + 1)?;
                }
            }
            5 => {
                let mut prev_key: Option<&[u8]> = None;
                for _ in 0..self.count(arg, 2)? {
                    let key_start = self.pos;
                    self.skip(depth + 1)?;
                    self.check_key_order(&mut prev_key, key_start)?;
                    self.skip(depth + 1)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Reads the next item's head; a byte or text string comes with its contents. The items
    /// of an array or map are the caller's to read next: each with [`Decoder::read_head`] or
    /// [`Decoder::skip`], map keys checked with [`Decoder::check_key_order`].
    pub(crate) fn read_head(&mut self) -> Result<Head<'a>, CborError> {
        let (major, arg, at) = self.raw_head()?;
        Ok(match major {
            0 => Head::Uint(arg),
            1 => Head::Nint(arg),
            2 => Head::Bytes(self.take(arg)?),
            3 => Head::Text(self.text(arg, at)?),
            4 => Head::Array(self.count(arg, 1)?),
            5 => Head::Map(self.count(arg, 2)?),
            _ => match arg {
                20 | 21 => Head::Bool,
                _ => Head::Null,
            },
        })
    }

    /// The bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.input.len() - self.pos
    }

    /// Checks that every byte was read.
    pub(crate) fn finish(&self) -> Result<(), CborError> {
        match self.input.len() - self.pos {
            0 => Ok(()),
            n => Err(CborError::TrailingBytes(n)),
        }
    }
}

/// The head of a data item read by [`Decoder::read_head`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Head<'a> {
    /// Unsigned integer.
    Uint(u64),
    /// Negative integer `-1 - n`, holding `n`.
    Nint(u64),
    /// Byte string.
    Bytes(&'a [u8]),
    /// Text string.
    Text(&'a str),
    /// Array of this many items, which follow.
    Array(usize),
    /// Map of this many entries, whose keys and values follow in turn.
    Map(usize),
    /// `false` or `true` (no field of the format holds one).
    Bool,
    /// `null`.
    Null,
}

impl Head<'_> {
    /// The kind of item, named as [`Value::kind`] names it.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Head::Uint(_) => "unsigned integer",
            Head::Nint(_) => "negative integer",
            Head::Bytes(_) => "byte string",
            Head::Text(_) => "text string",
            Head::Array(_) => "array",
            Head::Map(_) => "map",
            Head::Bool => "bool",
            Head::Null => "null",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hexs(v: &Value) -> String {
        hex::encode(encode(v))
    }

    #[test]
    fn rfc8949_appendix_a_examples() {
        assert_eq!(hexs(&Value::Uint(0)), "00");
        assert_eq!(hexs(&Value::Uint(23)), "17");
        assert_eq!(hexs(&Value::Uint(24)), "1818");
        assert_eq!(hexs(&Value::Uint(1000)), "1903e8");
        assert_eq!(hexs(&Value::Uint(1_000_000)), "1a000f4240");
        assert_eq!(hexs(&Value::Uint(1_000_000_000_000)), "1b000000e8d4a51000");
        assert_eq!(hexs(&Value::Uint(u64::MAX)), "1bffffffffffffffff");
        assert_eq!(hexs(&Value::int(-1)), "20");
        assert_eq!(hexs(&Value::int(-1000)), "3903e7");
        assert_eq!(hexs(&Value::Bytes(vec![1, 2, 3, 4])), "4401020304");
        assert_eq!(hexs(&Value::text("IETF")), "6449455446");
        assert_eq!(hexs(&Value::text("\u{6c34}")), "63e6b0b4");
        assert_eq!(hexs(&Value::Bool(false)), "f4");
        assert_eq!(hexs(&Value::Null), "f6");
        assert_eq!(
            hexs(&Value::Array(vec![
                Value::Uint(1),
                Value::Array(vec![Value::Uint(2), Value::Uint(3)])
            ])),
            "8201820203"
        );
        // {"a": 1, "b": [2, 3]}
        let m = Value::Map(vec![
            (
                Value::text("b"),
                Value::Array(vec![Value::Uint(2), Value::Uint(3)]),
            ),
            (Value::text("a"), Value::Uint(1)),
        ]);
        assert_eq!(hexs(&m), "a26161016162820203");
    }

    #[test]
    fn deterministic_key_order_is_length_first() {
        // RFC 8949 §4.2.1: keys sort by their encoded bytes, so shorter text keys come first.
        let m = Value::Map(vec![
            (Value::text("aa"), Value::Uint(1)),
            (Value::text("b"), Value::Uint(2)),
            (Value::Uint(10), Value::Uint(3)),
        ]);
        let enc = encode(&m);
        assert_eq!(hex::encode(&enc), "a30a03616202626161 01".replace(' ', ""));
        assert_eq!(
            decode(&enc),
            Ok(Value::Map(vec![
                (Value::Uint(10), Value::Uint(3)),
                (Value::text("b"), Value::Uint(2)),
                (Value::text("aa"), Value::Uint(1)),
            ]))
        );
    }

    #[test]
    fn rejects_non_canonical_and_unsupported() {
        let bad: &[(&str, &str)] = &[
            ("1817", "non-shortest int"),
            ("190017", "non-shortest int"),
            ("5f4101ff", "indefinite bytes"),
            ("f93c00", "half float"),
            ("c11a514b67b0", "tag"),
            ("a2616201616101", "unsorted keys"),
            ("a2616101616102", "duplicate keys"),
            ("62c328", "invalid utf-8"),
            ("00 00", "trailing"),
            ("5a ffffffff", "huge length"),
            ("9b ffffffffffffffff", "huge array"),
            ("f7", "undefined"),
            ("1c", "reserved info"),
        ];
        for (h, why) in bad {
            let bytes = hex::decode(h.replace(' ', "")).unwrap_or_default();
            assert!(decode(&bytes).is_err(), "{why} accepted: {h}");
        }
        let mut deep = vec![0x81u8; MAX_DEPTH + 2];
        deep.push(0);
        assert_eq!(decode(&deep), Err(CborError::TooDeep));
    }
}
