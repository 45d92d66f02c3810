//! Content-defined chunking: FastCDC 2020 with a keyed gear table.
//!
//! The cut-point search is the `fastcdc` crate's (`cut_gear`), fed with gear tables derived from
//! the repository's secret chunker seed (see `zaibei_format::config::gear_tables`), so chunk
//! boundaries, and with them chunk sizes, do not reveal which known files a repository holds.

use std::io::{self, Read};
use std::ops::Range;

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
    /// streams: it is allocated at twice the maximum chunk size once and then reused, so a
    /// stream per small file costs no allocation (a stream whose window was widened with
    /// [`ChunkStream::set_window`] gives the buffer back at that size when dropped). It is
    /// allocated zeroed rather than cleared by hand: when the allocator hands out fresh pages
    /// for it (glibc maps blocks this large afresh unless a freed one of that size can be
    /// reused), only the part that reads have filled takes memory, and a worker that reads only
    /// small files holds kilobytes of it.
    pub fn stream<'b, R: Read>(&self, reader: R, buf: &'b mut Vec<u8>) -> ChunkStream<'_, 'b, R> {
        if buf.len() < 2 * self.max {
            *buf = vec![0; 2 * self.max];
        }
        let window = 2 * self.max;
        ChunkStream {
            chunker: self,
            reader,
            buf,
            window,
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
    /// The size the buffer takes at the next refill.
    window: usize,
    start: usize,
    end: usize,
    eof: bool,
    bytes_read: u64,
}

impl<R: Read> ChunkStream<'_, '_, R> {
    /// The next chunk, or `None` at the end of the stream.
    pub fn next_chunk(&mut self) -> io::Result<Option<&[u8]>> {
        Ok(self.next_range()?.map(|range| &self.buf[range]))
    }

    /// The next chunk as a range of [`buffer`](Self::buffer), or `None` at the end of the
    /// stream. The ranges returned so far stay valid until a call made while
    /// [`will_refill`](Self::will_refill) is true, which moves the buffered bytes.
    pub fn next_range(&mut self) -> io::Result<Option<Range<usize>>> {
        if self.will_refill() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            self.resize_to_window();
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
        let range = self.start..self.start + n;
        self.start += n;
        Ok(Some(range))
    }

    /// Whether the next call to [`next_range`](Self::next_range) or
    /// [`next_chunk`](Self::next_chunk) reads more of the stream, moving the bytes of every
    /// range returned so far: a caller that keeps ranges must use them before that call.
    pub fn will_refill(&self) -> bool {
        self.end - self.start < self.chunker.max && !self.eof
    }

    /// Sets the size of the read window from the next refill on (never below twice the maximum
    /// chunk size): a wider window holds more chunks at once, so that a caller hashing the
    /// chunks where they lie can hash more of them side by side. Narrowing gives the memory
    /// back at that refill.
    pub fn set_window(&mut self, len: usize) {
        self.window = len.max(2 * self.chunker.max);
    }

    /// The largest chunk the stream cuts.
    pub fn max_chunk(&self) -> usize {
        self.chunker.max
    }

    /// The size of the read window from the next refill on.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Brings the buffer to the window's size; called when only the unchunked tail (shorter
    /// than the maximum chunk) remains, at its start.
    fn resize_to_window(&mut self) {
        let len = self.buf.len();
        if self.window > len {
            self.buf.reserve_exact(self.window - len);
            self.buf.resize(self.window, 0);
        } else if self.window < len {
            self.buf.truncate(self.window.max(self.end));
            self.buf.shrink_to_fit();
        }
    }

    /// The buffered bytes that [`next_range`](Self::next_range)'s ranges index.
    pub fn buffer(&self) -> &[u8] {
        self.buf
    }

    /// Bytes read from the stream so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }
}

impl<R> Drop for ChunkStream<'_, '_, R> {
    /// Gives a widened buffer back at its usual size, so that the caller's next stream holds no
    /// more than that.
    fn drop(&mut self) {
        let usual = 2 * self.chunker.max;
        if self.buf.len() > usual {
            self.buf.truncate(usual);
            self.buf.shrink_to_fit();
        }
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

    /// A reader that hands out at most 1,000 bytes per call.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(1000);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn ranges_kept_until_a_refill_cover_the_input_as_chunks_do() {
        let c = Chunker::new(Suite::Gm, &[4; 32], small());
        let d = data(700_000);
        // The boundaries of the whole input held in memory, cut by `cut` directly.
        let mut expected = Vec::new();
        let mut pos = 0;
        while pos < d.len() {
            let n = c.cut(&d[pos..]);
            expected.push(n);
            pos += n;
        }
        let mut buf = Vec::new();
        let mut stream = c.stream(Trickle(&d), &mut buf);
        let (mut kept, mut copied, mut refills) = (Vec::new(), Vec::new(), 0);
        let mut sizes = Vec::new();
        loop {
            if stream.will_refill() && !kept.is_empty() {
                // Use the ranges before the buffered bytes move.
                for range in kept.drain(..) {
                    copied.extend_from_slice(&stream.buffer()[range]);
                }
                refills += 1;
            }
            let range = match stream.next_range() {
                Ok(Some(range)) => range,
                Ok(None) => break,
                Err(e) => panic!("reading: {e}"),
            };
            sizes.push(range.len());
            kept.push(range);
        }
        for range in kept.drain(..) {
            copied.extend_from_slice(&stream.buffer()[range]);
        }
        assert!(copied == d, "the kept ranges rebuild the input");
        assert_eq!(sizes, expected, "the boundaries of the input cut whole");
        assert!(
            refills > 3,
            "the buffer moved {refills} times with ranges kept"
        );
    }

    #[test]
    fn a_widened_window_cuts_the_same_chunks_and_gives_its_memory_back() {
        let c = Chunker::new(Suite::Gm, &[5; 32], small());
        let usual = 2 * 65536;
        let d = data(4_000_000);
        let expected = chunks(&c, &d);
        let mut buf = Vec::new();
        let (mut sizes, mut copied, mut widest) = (Vec::new(), Vec::new(), 0);
        {
            let mut stream = c.stream(Trickle(&d), &mut buf);
            assert_eq!(stream.window(), usual);
            // Narrower than the usual window is not allowed.
            stream.set_window(10);
            assert_eq!(stream.window(), usual);
            let mut kept = Vec::new();
            let mut n = 0;
            loop {
                if stream.will_refill() && !kept.is_empty() {
                    for range in kept.drain(..) {
                        copied.extend_from_slice(&stream.buffer()[range]);
                    }
                    // Wide, then usual again, then wide: the window changes at refills only.
                    n += 1;
                    stream.set_window(if n % 3 == 2 { usual } else { 5 * usual });
                }
                let Some(range) = stream.next_range().unwrap() else {
                    break;
                };
                widest = widest.max(stream.buffer().len());
                sizes.push(range.len());
                kept.push(range);
            }
            for range in kept.drain(..) {
                copied.extend_from_slice(&stream.buffer()[range]);
            }
            assert!(n > 5, "{n} refills");
        }
        assert!(copied == d, "the chunks rebuild the input");
        assert_eq!(
            sizes, expected,
            "the same boundaries as through the usual window"
        );
        assert_eq!(widest, 5 * usual);
        // Dropping the stream gave the buffer back at its usual size.
        assert_eq!(buf.len(), usual);
        assert_eq!(buf.capacity(), usual);
    }
}
