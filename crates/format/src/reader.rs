//! Typed reads of an object's fields straight from its CBOR bytes, in one pass and without
//! building [`crate::cbor::Value`]s: for the objects read most often (trees, index objects,
//! pack headers).
//!
//! A decoder built on [`FieldReader`] must accept exactly what the generic path (`cbor::decode`,
//! then [`crate::fields::Fields`]) accepts: every item it does not use is skipped with the same
//! checks `cbor::decode` makes (shortest forms, UTF-8, sorted unique map keys, nesting depth),
//! and [`FieldReader::finish`] refuses trailing bytes. Errors name the object and the field as
//! `Fields` does.

use crate::cbor::{CborError, Decoder, Head};
use crate::{FormatError, Id};

/// A cursor over one object's CBOR body.
pub(crate) struct FieldReader<'a> {
    d: Decoder<'a>,
    what: &'static str,
}

impl<'a> FieldReader<'a> {
    /// A reader of `body`, an object of kind `what`.
    pub(crate) fn new(what: &'static str, body: &'a [u8]) -> Self {
        FieldReader {
            d: Decoder::new(body),
            what,
        }
    }

    /// The kind of object, for errors.
    pub(crate) fn what(&self) -> &'static str {
        self.what
    }

    fn cbor(&self, source: CborError) -> FormatError {
        FormatError::Cbor {
            what: self.what,
            source,
        }
    }

    /// The next item's head.
    pub(crate) fn head(&mut self) -> Result<Head<'a>, FormatError> {
        self.d.read_head().map_err(|e| self.cbor(e))
    }

    /// A map (an object or a nested record): its number of entries.
    pub(crate) fn map(&mut self) -> Result<usize, FormatError> {
        match self.head()? {
            Head::Map(n) => Ok(n),
            other => Err(FormatError::invalid(
                self.what,
                format!("expected a map, found {}", other.kind()),
            )),
        }
    }

    /// The next key of a map at nesting `depth` (its value is at the same depth): text keys
    /// are returned, others skipped; the order after `prev_key` is checked.
    pub(crate) fn key(
        &mut self,
        depth: usize,
        prev_key: &mut Option<&'a [u8]>,
    ) -> Result<Option<&'a str>, FormatError> {
        self.d.read_key(depth, prev_key).map_err(|e| self.cbor(e))
    }

    /// Skips the next item at nesting `depth`, checking it.
    pub(crate) fn skip(&mut self, depth: usize) -> Result<(), FormatError> {
        self.d.skip(depth).map_err(|e| self.cbor(e))
    }

    /// A copy of the cursor, to look ahead.
    pub(crate) fn ahead(&self) -> Decoder<'a> {
        self.d
    }

    /// Moves the cursor to where a look-ahead copy stopped.
    pub(crate) fn advance_to(&mut self, ahead: Decoder<'a>) {
        self.d = ahead;
    }

    /// Checks that the body ends here.
    pub(crate) fn finish(&self) -> Result<(), FormatError> {
        self.d.finish().map_err(|e| self.cbor(e))
    }

    /// The error for a required field that is absent.
    pub(crate) fn missing(&self, field: &'static str) -> FormatError {
        FormatError::field(self.what, field, "missing")
    }

    /// The error for a field holding the wrong kind of item.
    pub(crate) fn wrong(
        &self,
        field: &'static str,
        expected: &str,
        found: &Head<'_>,
    ) -> FormatError {
        FormatError::field(
            self.what,
            field,
            format!("expected {expected}, found {}", found.kind()),
        )
    }

    /// Checks a format version read from field `v` (required, at most `supported`).
    pub(crate) fn version(&self, found: Option<u64>, supported: u64) -> Result<(), FormatError> {
        let v = found.ok_or_else(|| self.missing("v"))?;
        if v == 0 || v > supported {
            return Err(FormatError::UnsupportedVersion {
                what: self.what,
                found: v,
                supported,
            });
        }
        Ok(())
    }

    /// An unsigned integer.
    pub(crate) fn uint(&mut self, field: &'static str) -> Result<u64, FormatError> {
        match self.head()? {
            Head::Uint(n) => Ok(n),
            other => Err(self.wrong(field, "unsigned integer", &other)),
        }
    }

    /// An unsigned integer that must fit in a `u32`.
    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, FormatError> {
        let n = self.uint(field)?;
        u32::try_from(n)
            .map_err(|_| FormatError::field(self.what, field, format!("{n} exceeds 32 bits")))
    }

    /// A byte string, borrowed from the body.
    pub(crate) fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], FormatError> {
        match self.head()? {
            Head::Bytes(b) => Ok(b),
            other => Err(self.wrong(field, "byte string", &other)),
        }
    }

    /// A text string, borrowed from the body.
    pub(crate) fn text(&mut self, field: &'static str) -> Result<&'a str, FormatError> {
        match self.head()? {
            Head::Text(t) => Ok(t),
            other => Err(self.wrong(field, "text string", &other)),
        }
    }

    /// A 32-byte id held in field `field`.
    pub(crate) fn id(&mut self, field: &'static str) -> Result<Id, FormatError> {
        let b = self.bytes(field)?;
        self.id_of(field, b)
    }

    /// An element of an array of ids (field `field`).
    pub(crate) fn id_element(&mut self, field: &'static str) -> Result<Id, FormatError> {
        match self.head()? {
            Head::Bytes(b) => self.id_of(field, b),
            other => Err(self.wrong(field, "32-byte id", &other)),
        }
    }

    fn id_of(&self, field: &'static str, b: &[u8]) -> Result<Id, FormatError> {
        Id::from_slice(b).ok_or_else(|| {
            FormatError::field(
                self.what,
                field,
                format!("id must be 32 bytes, found {}", b.len()),
            )
        })
    }

    /// An array: its number of items.
    pub(crate) fn array(&mut self, field: &'static str) -> Result<usize, FormatError> {
        match self.head()? {
            Head::Array(n) => Ok(n),
            other => Err(self.wrong(field, "array", &other)),
        }
    }

    /// An empty vector with room for `count` items of at least `min_bytes` encoded bytes
    /// each, never more than the bytes left could hold: a hostile count makes the decoder
    /// fail at the end of the input, not reserve memory many times the input's size.
    pub(crate) fn vec_for<T>(&self, count: usize, min_bytes: usize) -> Vec<T> {
        Vec::with_capacity(count.min(self.d.remaining() / min_bytes.max(1)))
    }

    /// An array of ids.
    pub(crate) fn ids(&mut self, field: &'static str) -> Result<Vec<Id>, FormatError> {
        let count = self.array(field)?;
        // A 32-byte byte string takes 34 bytes.
        let mut ids = self.vec_for(count, 34);
        for _ in 0..count {
            ids.push(self.id_element(field)?);
        }
        Ok(ids)
    }
}
