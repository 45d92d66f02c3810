//! Typed access to the CBOR maps that make up zaibei's objects.
//!
//! Every object is a map with text keys. [`MapBuilder`] assembles one; [`Fields`] takes one
//! apart, naming the object and the field in every error. Keys a reader does not know are
//! ignored (additions that old readers may safely skip); changes a reader must understand raise
//! the object's version.

use crate::cbor::Value;
use crate::{FormatError, Id, Timestamp};

/// Builds a CBOR map with text keys.
#[derive(Debug, Default)]
pub struct MapBuilder(Vec<(Value, Value)>);

impl MapBuilder {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds any value.
    pub fn value(mut self, key: &str, v: Value) -> Self {
        self.0.push((Value::text(key), v));
        self
    }

    /// Adds an unsigned integer.
    pub fn uint(self, key: &str, n: u64) -> Self {
        self.value(key, Value::Uint(n))
    }

    /// Adds a signed integer.
    pub fn int(self, key: &str, n: i64) -> Self {
        self.value(key, Value::int(n))
    }

    /// Adds a byte string.
    pub fn bytes(self, key: &str, b: &[u8]) -> Self {
        self.value(key, Value::Bytes(b.to_vec()))
    }

    /// Adds a text string.
    pub fn text(self, key: &str, s: &str) -> Self {
        self.value(key, Value::text(s))
    }

    /// Adds an id as a 32-byte byte string.
    pub fn id(self, key: &str, id: &Id) -> Self {
        self.bytes(key, id.as_bytes())
    }

    /// Adds a timestamp as `[secs, nanos]`.
    pub fn time(self, key: &str, t: Timestamp) -> Self {
        self.value(key, time_value(t))
    }

    /// Adds the value only when `Some`.
    pub fn opt(self, key: &str, v: Option<Value>) -> Self {
        match v {
            Some(v) => self.value(key, v),
            None => self,
        }
    }

    /// The finished map.
    pub fn build(self) -> Value {
        Value::Map(self.0)
    }
}

/// A timestamp as the CBOR array `[secs, nanos]`.
pub fn time_value(t: Timestamp) -> Value {
    Value::Array(vec![Value::int(t.secs), Value::Uint(u64::from(t.nanos))])
}

/// An id as a CBOR byte string.
pub fn id_value(id: &Id) -> Value {
    Value::Bytes(id.as_bytes().to_vec())
}

/// The fields of a decoded map, taken out one by one.
#[derive(Debug)]
pub struct Fields {
    what: &'static str,
    entries: Vec<(Value, Value)>,
}

impl Fields {
    /// Views `v` as the map of an object of kind `what`.
    pub fn new(what: &'static str, v: Value) -> Result<Self, FormatError> {
        match v {
            Value::Map(entries) => Ok(Fields { what, entries }),
            other => Err(FormatError::invalid(
                what,
                format!("expected a map, found {other}"),
            )),
        }
    }

    /// The kind of object, for errors.
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// Removes and returns the value of `key`, if present.
    pub fn take(&mut self, key: &str) -> Option<Value> {
        let pos = self
            .entries
            .iter()
            .position(|(k, _)| matches!(k, Value::Text(t) if t == key))?;
        Some(self.entries.swap_remove(pos).1)
    }

    fn req(&mut self, key: &'static str) -> Result<Value, FormatError> {
        self.take(key)
            .ok_or_else(|| FormatError::field(self.what, key, "missing"))
    }

    fn wrong(&self, key: &'static str, expected: &str, v: &Value) -> FormatError {
        FormatError::field(self.what, key, format!("expected {expected}, found {v}"))
    }

    /// A required unsigned integer.
    pub fn uint(&mut self, key: &'static str) -> Result<u64, FormatError> {
        let v = self.req(key)?;
        self.as_uint(key, v)
    }

    /// An optional unsigned integer.
    pub fn opt_uint(&mut self, key: &'static str) -> Result<Option<u64>, FormatError> {
        self.take(key).map(|v| self.as_uint(key, v)).transpose()
    }

    fn as_uint(&self, key: &'static str, v: Value) -> Result<u64, FormatError> {
        match v {
            Value::Uint(n) => Ok(n),
            other => Err(self.wrong(key, "unsigned integer", &other)),
        }
    }

    /// A required unsigned integer that must fit in a `u32`.
    pub fn u32(&mut self, key: &'static str) -> Result<u32, FormatError> {
        let n = self.uint(key)?;
        u32::try_from(n)
            .map_err(|_| FormatError::field(self.what, key, format!("{n} exceeds 32 bits")))
    }

    /// A required signed integer fitting in an `i64`.
    pub fn int(&mut self, key: &'static str) -> Result<i64, FormatError> {
        let v = self.req(key)?;
        value_to_i64(&v).ok_or_else(|| self.wrong(key, "64-bit signed integer", &v))
    }

    /// A required byte string.
    pub fn bytes(&mut self, key: &'static str) -> Result<Vec<u8>, FormatError> {
        let v = self.req(key)?;
        self.as_bytes(key, v)
    }

    /// An optional byte string.
    pub fn opt_bytes(&mut self, key: &'static str) -> Result<Option<Vec<u8>>, FormatError> {
        self.take(key).map(|v| self.as_bytes(key, v)).transpose()
    }

    fn as_bytes(&self, key: &'static str, v: Value) -> Result<Vec<u8>, FormatError> {
        match v {
            Value::Bytes(b) => Ok(b),
            other => Err(self.wrong(key, "byte string", &other)),
        }
    }

    /// A required text string.
    pub fn text(&mut self, key: &'static str) -> Result<String, FormatError> {
        let v = self.req(key)?;
        self.as_text(key, v)
    }

    /// An optional text string.
    pub fn opt_text(&mut self, key: &'static str) -> Result<Option<String>, FormatError> {
        self.take(key).map(|v| self.as_text(key, v)).transpose()
    }

    fn as_text(&self, key: &'static str, v: Value) -> Result<String, FormatError> {
        match v {
            Value::Text(s) => Ok(s),
            other => Err(self.wrong(key, "text string", &other)),
        }
    }

    /// A required 32-byte id.
    pub fn id(&mut self, key: &'static str) -> Result<Id, FormatError> {
        let b = self.bytes(key)?;
        Id::from_slice(&b).ok_or_else(|| {
            FormatError::field(
                self.what,
                key,
                format!("id must be 32 bytes, found {}", b.len()),
            )
        })
    }

    /// An optional 32-byte id (absent or `null`).
    pub fn opt_id(&mut self, key: &'static str) -> Result<Option<Id>, FormatError> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                let b = self.as_bytes(key, v)?;
                Id::from_slice(&b).map(Some).ok_or_else(|| {
                    FormatError::field(
                        self.what,
                        key,
                        format!("id must be 32 bytes, found {}", b.len()),
                    )
                })
            }
        }
    }

    /// A required array.
    pub fn array(&mut self, key: &'static str) -> Result<Vec<Value>, FormatError> {
        let v = self.req(key)?;
        self.as_array(key, v)
    }

    /// An optional array (absent means empty).
    pub fn opt_array(&mut self, key: &'static str) -> Result<Vec<Value>, FormatError> {
        match self.take(key) {
            None => Ok(Vec::new()),
            Some(v) => self.as_array(key, v),
        }
    }

    fn as_array(&self, key: &'static str, v: Value) -> Result<Vec<Value>, FormatError> {
        match v {
            Value::Array(a) => Ok(a),
            other => Err(self.wrong(key, "array", &other)),
        }
    }

    /// A required nested map.
    pub fn map(&mut self, key: &'static str, what: &'static str) -> Result<Fields, FormatError> {
        let v = self.req(key)?;
        Fields::new(what, v)
    }

    /// A required timestamp `[secs, nanos]`.
    pub fn time(&mut self, key: &'static str) -> Result<Timestamp, FormatError> {
        let v = self.req(key)?;
        value_to_time(&v).ok_or_else(|| {
            FormatError::field(self.what, key, "expected [seconds, nanoseconds below 1e9]")
        })
    }

    /// An optional timestamp.
    pub fn opt_time(&mut self, key: &'static str) -> Result<Option<Timestamp>, FormatError> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => value_to_time(&v).map(Some).ok_or_else(|| {
                FormatError::field(self.what, key, "expected [seconds, nanoseconds below 1e9]")
            }),
        }
    }

    /// A required format version that must not exceed `supported`.
    pub fn version(&mut self, supported: u64) -> Result<u64, FormatError> {
        let v = self.uint("v")?;
        if v == 0 || v > supported {
            return Err(FormatError::UnsupportedVersion {
                what: self.what,
                found: v,
                supported,
            });
        }
        Ok(v)
    }
}

/// Reads a CBOR integer into an `i64`.
pub fn value_to_i64(v: &Value) -> Option<i64> {
    match *v {
        Value::Uint(n) => i64::try_from(n).ok(),
        Value::Nint(n) => i64::try_from(n).ok().map(|n| -1 - n),
        _ => None,
    }
}

/// Reads a `[secs, nanos]` array.
pub fn value_to_time(v: &Value) -> Option<Timestamp> {
    let Value::Array(a) = v else { return None };
    let [s, n] = a.as_slice() else { return None };
    let secs = value_to_i64(s)?;
    let Value::Uint(nanos) = *n else { return None };
    Timestamp::new(secs, u32::try_from(nanos).ok()?)
}

/// Reads a 32-byte id out of a value, for array elements.
pub fn value_to_id(what: &'static str, field: &'static str, v: &Value) -> Result<Id, FormatError> {
    match v {
        Value::Bytes(b) => Id::from_slice(b).ok_or_else(|| {
            FormatError::field(
                what,
                field,
                format!("id must be 32 bytes, found {}", b.len()),
            )
        }),
        other => Err(FormatError::field(
            what,
            field,
            format!("expected 32-byte id, found {other}"),
        )),
    }
}

/// Reads an unsigned integer out of a value, for array elements.
pub fn value_to_u64(
    what: &'static str,
    field: &'static str,
    v: &Value,
) -> Result<u64, FormatError> {
    match v {
        Value::Uint(n) => Ok(*n),
        other => Err(FormatError::field(
            what,
            field,
            format!("expected unsigned integer, found {other}"),
        )),
    }
}
