//! Content-defined chunking: FastCDC 2020 with a keyed gear table.
//!
//! The cut-point search is the `fastcdc` crate's (`cut_gear`), fed with gear tables derived from
//! the repository's secret chunker seed (see `zaibei_format::config::gear_tables`), so chunk
//! boundaries, and with them chunk sizes, do not reveal which known files a repository holds.

use std::io::{self, Read};

use fastcdc::v2020::{Normalization, cut_gear, select_masks};
use zaibei_crypto::Suite;
use zaibei_format::ChunkerParams;
use zaibei_format::config::gear_tables;

/// Finds chunk boundaries.
#[derive(Clone)]
pub struct Chunker {
    min: usize,
    avg: usize,
    max: usize,
    masks: (u64, u64, u64, u64),
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
}

impl Chunker {
    /// A chunker for a repository's parameters and seed.
    pub fn new(suite: Suite, seed: &[u8; 32], params: ChunkerParams) -> Self {
        let (gear, gear_ls) = gear_tables(suite, seed);
        let (mask_s, mask_l) = select_masks(params.avg as usize, Normalization::Level1);
        Chunker {
            min: params.min as usize,
            avg: params.avg as usize,
            max: params.max as usize,
            masks: (mask_s, mask_l, mask_s << 1, mask_l << 1),
            gear,
            gear_ls,
        }
    }

    /// Largest chunk.
    pub fn max_size(&self) -> usize {
        self.max
    }

    /// Length of the chunk at the start of `data`. `data` must hold at least the maximum chunk
    /// size unless it is the end of the stream.
    pub fn cut(&self, data: &[u8]) -> usize {
        let (s, l, s_ls, l_ls) = self.masks;
        let (_, n) = cut_gear(
            data,
            self.min,
            self.avg,
            self.max,
            s,
            l,
            s_ls,
            l_ls,
            &self.gear[..],
            &self.gear_ls[..],
        );
        n.clamp(1.min(data.len()), data.len())
    }

    /// Streams the chunks of `reader` through `buf`, a buffer the caller keeps between
    /// streams: it grows to twice the maximum chunk size once and is then reused, so a stream
    /// per small file costs no allocation and no clearing of megabytes.
    pub fn stream<'b, R: Read>(&self, reader: R, buf: &'b mut Vec<u8>) -> ChunkStream<'_, 'b, R> {
        if buf.len() < 2 * self.max {
            buf.resize(2 * self.max, 0);
        }
        ChunkStream {
            chunker: self,
            reader,
            buf,
            start: 0,
            end: 0,
            eof: false,
            bytes_read: 0,
        }
    }
}

/// The chunks of a stream, read through a buffer of twice the maximum chunk size.
pub struct ChunkStream<'c, 'b, R> {
    chunker: &'c Chunker,
    reader: R,
    buf: &'b mut Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    bytes_read: u64,
}

impl<R: Read> ChunkStream<'_, '_, R> {
    /// The next chunk, or `None` at the end of the stream.
    pub fn next_chunk(&mut self) -> io::Result<Option<&[u8]>> {
        if self.end - self.start < self.chunker.max && !self.eof {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            while self.end < self.buf.len() {
                match self.reader.read(&mut self.buf[self.end..]) {
                    Ok(0) => {
                        self.eof = true;
                        break;
                    }
                    Ok(n) => {
                        self.end += n;
                        self.bytes_read += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if self.start == self.end {
            return Ok(None);
        }
        let n = self.chunker.cut(&self.buf[self.start..self.end]);
        let chunk = &self.buf[self.start..self.start + n];
        self.start += n;
        Ok(Some(chunk))
    }

    /// Bytes read from the stream so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        let mut x = 0x1234_5678u32;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect()
    }

    fn small() -> ChunkerParams {
        ChunkerParams {
            min: 2048,
            avg: 8192,
            max: 65536,
        }
    }

    fn chunks(c: &Chunker, d: &[u8]) -> Vec<usize> {
        let mut buf = Vec::new();
        let mut s = c.stream(d, &mut buf);
        let mut out = Vec::new();
        while let Some(ch) = s.next_chunk().unwrap_or(None) {
            out.push(ch.len());
        }
        out
    }

    #[test]
    fn chunks_cover_the_input_within_bounds() {
        let c = Chunker::new(Suite::Gm, &[1; 32], small());
        let d = data(1_000_000);
        let sizes = chunks(&c, &d);
        assert_eq!(sizes.iter().sum::<usize>(), d.len());
        assert!(
            sizes[..sizes.len() - 1]
                .iter()
                .all(|&n| (2048..=65536).contains(&n))
        );
        let avg = d.len() / sizes.len();
        assert!((4096..=16384).contains(&avg), "average chunk {avg}");
    }

    #[test]
    fn boundaries_depend_on_the_seed_and_resynchronise_after_an_insert() {
        let d = data(500_000);
        let a = Chunker::new(Suite::Gm, &[1; 32], small());
        let b = Chunker::new(Suite::Gm, &[2; 32], small());
        assert_ne!(chunks(&a, &d), chunks(&b, &d));
        // Inserting bytes near the start changes only the first chunks.
        let mut e = d.clone();
        e.splice(100..100, [7u8; 33]);
        let ca = chunks(&a, &d);
        let ce = chunks(&a, &e);
        let common_tail = ca
            .iter()
            .rev()
            .zip(ce.iter().rev())
            .take_while(|(x, y)| x == y)
            .count();
        assert!(
            common_tail + 3 >= ca.len(),
            "only {common_tail} of {} chunks survived",
            ca.len()
        );
    }

    #[test]
    fn empty_and_tiny_inputs() {
        let c = Chunker::new(Suite::Intl, &[3; 32], small());
        assert!(chunks(&c, &[]).is_empty());
        assert_eq!(chunks(&c, &[1, 2, 3]), vec![3]);
    }
}
