//! Export and import of the log as JSON Lines: one record per line, in stored order.

use std::borrow::Borrow;
use std::io::{BufRead, Read, Write};

use crate::{AuditError, AuditRecord};

/// Longest line accepted when reading (16 MiB); a longer line is reported as a bad line.
pub const MAX_LINE_LEN: usize = 16 << 20;

/// Writes records as JSON Lines: each record as compact JSON on its own line.
#[derive(Debug)]
pub struct JsonlWriter<W: Write> {
    inner: W,
    lines: u64,
}

impl<W: Write> JsonlWriter<W> {
    /// A writer onto `inner` (wrap files in a `BufWriter`).
    pub fn new(inner: W) -> Self {
        JsonlWriter { inner, lines: 0 }
    }

    /// Writes one record.
    pub fn write(&mut self, record: &AuditRecord) -> Result<(), AuditError> {
        let line = self.lines + 1;
        let mut buf = serde_json::to_vec(record).map_err(|e| AuditError::BadLine {
            line,
            reason: e.to_string(),
        })?;
        buf.push(b'\n');
        self.inner
            .write_all(&buf)
            .map_err(|source| AuditError::LineIo { line, source })?;
        self.lines = line;
        Ok(())
    }

    /// Lines written so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(mut self) -> Result<W, AuditError> {
        self.inner.flush().map_err(|source| AuditError::LineIo {
            line: self.lines,
            source,
        })?;
        Ok(self.inner)
    }
}

/// Writes `records` to `out` as JSON Lines and flushes; returns the number of records.
pub fn write_jsonl<W, I>(out: W, records: I) -> Result<u64, AuditError>
where
    W: Write,
    I: IntoIterator,
    I::Item: Borrow<AuditRecord>,
{
    let mut w = JsonlWriter::new(out);
    for r in records {
        w.write(r.borrow())?;
    }
    let n = w.lines();
    w.finish()?;
    Ok(n)
}

/// Reads records from JSON Lines, one at a time (an iterator). Blank lines are skipped.
///
/// A line that is not a valid record yields [`AuditError::BadLine`] with its number, and
/// reading goes on with the next line; a failure to read yields [`AuditError::LineIo`] and
/// ends the iteration.
#[derive(Debug)]
pub struct JsonlReader<R: BufRead> {
    inner: R,
    line: u64,
    buf: Vec<u8>,
    done: bool,
}

impl<R: BufRead> JsonlReader<R> {
    /// A reader of `inner`.
    pub fn new(inner: R) -> Self {
        JsonlReader {
            inner,
            line: 0,
            buf: Vec::new(),
            done: false,
        }
    }

    /// Reads one line (at most [`MAX_LINE_LEN`] bytes kept) into `buf`; false at the end.
    /// The second value is true when the line was longer and its rest was skipped.
    fn read_line(&mut self) -> std::io::Result<Option<bool>> {
        self.buf.clear();
        let limit = MAX_LINE_LEN as u64 + 1;
        let n = (&mut self.inner)
            .take(limit)
            .read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        if self.buf.len() as u64 == limit && self.buf.last() != Some(&b'\n') {
            // Skip the rest of the overlong line.
            let mut scratch = Vec::new();
            loop {
                scratch.clear();
                let m = (&mut self.inner)
                    .take(1 << 16)
                    .read_until(b'\n', &mut scratch)?;
                if m == 0 || scratch.last() == Some(&b'\n') {
                    break;
                }
            }
            return Ok(Some(true));
        }
        Ok(Some(false))
    }
}

impl<R: BufRead> Iterator for JsonlReader<R> {
    type Item = Result<AuditRecord, AuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let line = self.line + 1;
            let overlong = match self.read_line() {
                Ok(None) => {
                    self.done = true;
                    return None;
                }
                Ok(Some(overlong)) => overlong,
                Err(source) => {
                    self.done = true;
                    return Some(Err(AuditError::LineIo { line, source }));
                }
            };
            self.line = line;
            if overlong {
                return Some(Err(AuditError::BadLine {
                    line,
                    reason: format!("longer than {MAX_LINE_LEN} bytes"),
                }));
            }
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(
                serde_json::from_slice::<AuditRecord>(&self.buf).map_err(|e| AuditError::BadLine {
                    line,
                    reason: e.to_string(),
                }),
            );
        }
        None
    }
}

/// Reads records from JSON Lines (see [`JsonlReader`]).
pub fn read_jsonl<R: BufRead>(reader: R) -> JsonlReader<R> {
    JsonlReader::new(reader)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{AuditAction, AuditEvent, Outcome};

    fn log(n: usize) -> Vec<AuditRecord> {
        let mut out: Vec<AuditRecord> = Vec::new();
        for i in 0..n {
            let e = AuditEvent::new(
                i as i64,
                "a\nb",
                AuditAction::Restore,
                "r",
                Outcome::Success,
            )
            .with_details(serde_json::json!({"files": i, "note": "x\ny"}));
            out.push(AuditRecord::next(out.last(), e));
        }
        out
    }

    #[test]
    fn round_trip() {
        let recs = log(5);
        let mut out = Vec::new();
        assert_eq!(write_jsonl(&mut out, &recs).unwrap(), 5);
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(text.lines().count(), 5);
        assert!(text.ends_with('\n'));
        let back: Vec<AuditRecord> = read_jsonl(&out[..]).map(Result::unwrap).collect();
        assert_eq!(back, recs);
    }

    #[test]
    fn bad_lines_are_numbered_and_skipped() {
        let recs = log(3);
        let mut out = Vec::new();
        write_jsonl(&mut out, &recs[..1]).unwrap();
        out.extend_from_slice(b"\n   \n{not json}\n");
        write_jsonl(&mut out, &recs[1..]).unwrap();
        out.extend_from_slice(b"{\"seq\":1}");
        let items: Vec<_> = read_jsonl(&out[..]).collect();
        assert_eq!(items.len(), 5);
        assert_eq!(items[0].as_ref().unwrap(), &recs[0]);
        match &items[1] {
            Err(AuditError::BadLine { line: 4, .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(
            items[1]
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("line 4")
        );
        assert_eq!(items[3].as_ref().unwrap(), &recs[2]);
        assert!(matches!(items[4], Err(AuditError::BadLine { line: 7, .. })));
    }

    #[test]
    fn overlong_line_is_skipped() {
        let recs = log(1);
        let mut out = vec![b'x'; MAX_LINE_LEN + 10];
        out.push(b'\n');
        write_jsonl(&mut out, &recs).unwrap();
        let items: Vec<_> = read_jsonl(&out[..]).collect();
        assert_eq!(items.len(), 2);
        assert!(matches!(items[0], Err(AuditError::BadLine { line: 1, .. })));
        assert_eq!(items[1].as_ref().unwrap(), &recs[0]);
    }

    #[test]
    fn read_errors_end_iteration() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk gone"))
            }
        }
        let mut it = read_jsonl(std::io::BufReader::new(Failing));
        assert!(matches!(
            it.next(),
            Some(Err(AuditError::LineIo { line: 1, .. }))
        ));
        assert!(it.next().is_none());
    }
}
