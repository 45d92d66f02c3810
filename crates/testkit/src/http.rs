//! HTTP/1.1 message framing: reading heads, telling where bodies end, and copying bodies
//! byte for byte with an optional cut-off point.
//!
//! Only as much of HTTP is understood as is needed to find message boundaries on a keep-alive
//! connection; every byte read is forwarded unchanged.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::ProxyError;

/// The longest message head (start line and headers) accepted.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// The longest chunk-size or trailer line accepted.
pub(crate) const MAX_LINE: usize = 8 * 1024;
/// Size of the read buffer of one side of a connection.
const BUF_SIZE: usize = 64 * 1024;

/// Bytes read from one socket and not yet consumed.
///
/// It is kept apart from the socket so that the socket can be split into halves while the
/// buffered bytes stay with the reading side. All reads are cancel-safe: bytes are only ever
/// added to the buffer after a read completes.
#[derive(Debug)]
pub(crate) struct ReadBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Default for ReadBuf {
    fn default() -> Self {
        Self {
            buf: vec![0; BUF_SIZE],
            start: 0,
            end: 0,
        }
    }
}

impl ReadBuf {
    /// The buffered, unconsumed bytes.
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks the first `n` buffered bytes as consumed.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more bytes from `reader` into the buffer; returns how many (0 at end of stream).
    /// Fails if the buffer is full of unconsumed bytes.
    pub(crate) async fn fill<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
    ) -> Result<usize, ProxyError> {
        if self.end == self.buf.len() {
            if self.start == 0 {
                return Err(ProxyError::HeadTooLarge(self.buf.len()));
            }
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = reader.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// Makes sure at least one byte is buffered; returns false at end of stream.
    async fn fill_some<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
    ) -> Result<bool, ProxyError> {
        if self.start < self.end {
            return Ok(true);
        }
        Ok(self.fill(reader).await? > 0)
    }

    /// Reads one message head, through the empty line that ends it, and consumes it.
    /// Returns `None` if the stream ends cleanly before the first byte of a head.
    /// Empty lines before a head are skipped, as RFC 9112 allows.
    pub(crate) async fn read_head<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        peer: &'static str,
    ) -> Result<Option<Vec<u8>>, ProxyError> {
        let mut searched = 0;
        loop {
            let leading = self
                .buffered()
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            if leading > 0 {
                self.consume(leading);
                searched = 0;
            }
            if let Some(end) = find_head_end(self.buffered(), searched) {
                let head = self.buffered()[..end].to_vec();
                self.consume(end);
                return Ok(Some(head));
            }
            searched = self.buffered().len();
            if searched >= MAX_HEAD {
                return Err(ProxyError::HeadTooLarge(MAX_HEAD));
            }
            if self.fill(reader).await? == 0 {
                return if self.buffered().is_empty() {
                    Ok(None)
                } else {
                    Err(ProxyError::Truncated(peer))
                };
            }
        }
    }

    /// Reads one line, including its line ending, and consumes it.
    async fn read_line<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        peer: &'static str,
    ) -> Result<Vec<u8>, ProxyError> {
        let mut searched = 0;
        loop {
            if let Some(i) = self.buffered()[searched..].iter().position(|&b| b == b'\n') {
                let end = searched + i + 1;
                let line = self.buffered()[..end].to_vec();
                self.consume(end);
                return Ok(line);
            }
            searched = self.buffered().len();
            if searched >= MAX_LINE {
                return Err(ProxyError::LineTooLong(MAX_LINE));
            }
            if self.fill(reader).await? == 0 {
                return Err(ProxyError::Truncated(peer));
            }
        }
    }
}

/// The index just past the `\r\n\r\n` (or bare `\n\n`) that ends a head, searching from
/// about `from` on.
fn find_head_end(bytes: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    let mut newlines = 0;
    for (i, &b) in bytes.iter().enumerate().skip(start) {
        match b {
            b'\n' => {
                newlines += 1;
                if newlines == 2 {
                    return Some(i + 1);
                }
            }
            b'\r' => {}
            _ => newlines = 0,
        }
    }
    None
}

/// The header fields of a message, in order, names as sent.
#[derive(Clone, Debug, Default)]
pub(crate) struct Headers(Vec<(String, String)>);

impl Headers {
    /// The value of the first field named `name` (compared case-insensitively).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of fields named `name`.
    fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The comma-separated elements of all fields named `name`, trimmed.
    fn tokens<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.get_all(name)
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }

    /// Whether a field named `name` lists `token` (case-insensitively).
    pub(crate) fn has_token(&self, name: &str, token: &str) -> bool {
        self.tokens(name).any(|t| t.eq_ignore_ascii_case(token))
    }

    /// How the body is framed according to `Transfer-Encoding` and `Content-Length`, or `None`
    /// if neither is present.
    fn framing(&self) -> Result<Option<BodyKind>, ProxyError> {
        if let Some(last) = self.tokens("transfer-encoding").last() {
            return Ok(Some(if last.eq_ignore_ascii_case("chunked") {
                BodyKind::Chunked
            } else {
                BodyKind::UntilClose
            }));
        }
        let mut length = None;
        for value in self.get_all("content-length") {
            for part in value.split(',') {
                let n: u64 = part
                    .trim()
                    .parse()
                    .map_err(|_| ProxyError::malformed(format!("Content-Length {value:?}")))?;
                if length.is_some_and(|l| l != n) {
                    return Err(ProxyError::malformed("conflicting Content-Length fields"));
                }
                length = Some(n);
            }
        }
        Ok(length.map(BodyKind::Length))
    }

    /// Parses the header lines of a head (everything after the start line).
    fn parse(lines: &mut std::str::Lines<'_>) -> Result<Self, ProxyError> {
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.is_empty() {
                break;
            }
            if line.starts_with([' ', '\t']) {
                // Obsolete line folding: a continuation of the previous field.
                let Some(last) = fields.last_mut() else {
                    return Err(ProxyError::malformed("continuation line before any header"));
                };
                last.1.push(' ');
                last.1.push_str(line.trim());
                continue;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(ProxyError::malformed(format!("header line {line:?}")));
            };
            if name.is_empty() || name.ends_with([' ', '\t']) {
                return Err(ProxyError::malformed(format!("header name {name:?}")));
            }
            fields.push((name.to_owned(), value.trim().to_owned()));
        }
        Ok(Self(fields))
    }
}

/// Splits a raw head into its lines (without line endings), requiring it to be text.
fn head_lines(raw: &[u8]) -> Result<std::str::Lines<'_>, ProxyError> {
    let text = std::str::from_utf8(raw).map_err(|_| ProxyError::malformed("head is not UTF-8"))?;
    Ok(text.lines())
}

/// Whether an HTTP version string is 1.1 or later (as opposed to 1.0).
fn is_http11(version: &str) -> Result<bool, ProxyError> {
    match version {
        "HTTP/1.1" => Ok(true),
        "HTTP/1.0" => Ok(false),
        other => Err(ProxyError::malformed(format!(
            "unsupported version {other:?}"
        ))),
    }
}

/// Whether a message with these headers and version lets the connection stay open after it.
fn keeps_alive(headers: &Headers, http11: bool) -> bool {
    if headers.has_token("connection", "close") {
        false
    } else {
        http11 || headers.has_token("connection", "keep-alive")
    }
}

/// How the end of a message body is found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyKind {
    /// Exactly this many bytes (0: no body).
    Length(u64),
    /// `Transfer-Encoding: chunked`, ended by the zero-size chunk and the trailers.
    Chunked,
    /// Everything until the sender closes the connection (responses only).
    UntilClose,
}

/// A parsed request head, together with its raw bytes.
#[derive(Clone, Debug)]
pub(crate) struct RequestHead {
    /// The head exactly as received, including the final empty line.
    pub(crate) raw: Vec<u8>,
    /// The method, e.g. `PUT`.
    pub(crate) method: String,
    /// The request target, e.g. `/bucket/key?uploadId=1`.
    pub(crate) target: String,
    /// Whether the request was HTTP/1.1 (rather than 1.0).
    pub(crate) http11: bool,
    /// The header fields.
    pub(crate) headers: Headers,
}

impl RequestHead {
    /// Parses a raw request head as returned by [`ReadBuf::read_head`].
    pub(crate) fn parse(raw: Vec<u8>) -> Result<Self, ProxyError> {
        let mut lines = head_lines(&raw)?;
        let start = lines.next().unwrap_or_default();
        let mut parts = start.split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ProxyError::malformed(format!("request line {start:?}")));
        };
        if method.is_empty() || target.is_empty() {
            return Err(ProxyError::malformed(format!("request line {start:?}")));
        }
        let (method, target) = (method.to_owned(), target.to_owned());
        let http11 = is_http11(version)?;
        let headers = Headers::parse(&mut lines)?;
        Ok(Self {
            raw,
            method,
            target,
            http11,
            headers,
        })
    }

    /// How the request body is framed (requests without framing headers have no body).
    pub(crate) fn body_kind(&self) -> Result<BodyKind, ProxyError> {
        match self.headers.framing()? {
            Some(BodyKind::UntilClose) => Err(ProxyError::malformed(
                "request with a transfer coding other than chunked",
            )),
            Some(kind) => Ok(kind),
            None => Ok(BodyKind::Length(0)),
        }
    }

    /// Whether the client waits for `100 Continue` before sending the body.
    pub(crate) fn expects_continue(&self) -> bool {
        self.http11 && self.headers.has_token("expect", "100-continue")
    }

    /// Whether the client lets the connection stay open after this exchange.
    pub(crate) fn keeps_alive(&self) -> bool {
        keeps_alive(&self.headers, self.http11)
    }

    /// The path part of the target (before any `?`).
    pub(crate) fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(self.target.as_str(), |(path, _)| path)
    }

    /// The names of the query parameters of the target, percent-encoded as sent.
    pub(crate) fn query_names(&self) -> impl Iterator<Item = &str> {
        let query = self.target.split_once('?').map_or("", |(_, query)| query);
        query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').map_or(p, |(name, _)| name))
    }

    /// Whether the target has a query parameter named `name`.
    pub(crate) fn has_query(&self, name: &str) -> bool {
        self.query_names().any(|n| n == name)
    }
}

/// A parsed response head, together with its raw bytes.
#[derive(Clone, Debug)]
pub(crate) struct ResponseHead {
    /// The head exactly as received, including the final empty line.
    pub(crate) raw: Vec<u8>,
    /// The status code.
    pub(crate) status: u16,
    /// Whether the response was HTTP/1.1 (rather than 1.0).
    http11: bool,
    /// The header fields.
    headers: Headers,
}

impl ResponseHead {
    /// Parses a raw response head as returned by [`ReadBuf::read_head`].
    pub(crate) fn parse(raw: Vec<u8>) -> Result<Self, ProxyError> {
        let mut lines = head_lines(&raw)?;
        let start = lines.next().unwrap_or_default();
        let mut parts = start.splitn(3, ' ');
        let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
            return Err(ProxyError::malformed(format!("status line {start:?}")));
        };
        let status = code
            .parse::<u16>()
            .ok()
            .filter(|s| (100..1000).contains(s))
            .ok_or_else(|| ProxyError::malformed(format!("status line {start:?}")))?;
        let http11 = is_http11(version)?;
        let headers = Headers::parse(&mut lines)?;
        Ok(Self {
            raw,
            status,
            http11,
            headers,
        })
    }

    /// Whether this is an interim (1xx) response that a final response follows.
    pub(crate) fn is_interim(&self) -> bool {
        (100..200).contains(&self.status)
    }

    /// How the body of this response to a `request_method` request is framed.
    pub(crate) fn body_kind(&self, request_method: &str) -> Result<BodyKind, ProxyError> {
        if request_method == "HEAD" || self.is_interim() || self.status == 204 || self.status == 304
        {
            return Ok(BodyKind::Length(0));
        }
        Ok(self.headers.framing()?.unwrap_or(BodyKind::UntilClose))
    }

    /// Whether the server lets the connection stay open after this response.
    pub(crate) fn keeps_alive(&self) -> bool {
        keeps_alive(&self.headers, self.http11)
    }
}

/// Whether a copy went to the end of the message or stopped at the cut-off point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    /// The whole message was forwarded.
    Complete,
    /// The cut-off point was reached; the rest was not forwarded.
    Cut,
}

/// Where to stop forwarding: `None` forwards everything, `Some(n)` forwards `n` more bytes
/// and then reports [`Flow::Cut`] (even if the message ends exactly there).
pub(crate) type CutOff = Option<u64>;

/// Writes `data`, or only as much of it as `cut` allows. Returns [`Flow::Complete`] when all
/// of `data` was written without reaching the cut-off point.
pub(crate) async fn emit<W: AsyncWrite + Unpin>(
    writer: &mut W,
    data: &[u8],
    cut: &mut CutOff,
) -> Result<Flow, ProxyError> {
    if let Some(left) = cut {
        if data.len() as u64 >= *left {
            let n = usize::try_from(*left).unwrap_or(data.len());
            writer.write_all(&data[..n]).await?;
            *left = 0;
            return Ok(Flow::Cut);
        }
        *left -= data.len() as u64;
    }
    writer.write_all(data).await?;
    Ok(Flow::Complete)
}

/// Copies one message body of the given kind from `src` (buffered in `buf`) to `dst`,
/// unchanged, stopping early at the cut-off point.
pub(crate) async fn copy_body<R, W>(
    buf: &mut ReadBuf,
    src: &mut R,
    dst: &mut W,
    kind: BodyKind,
    cut: &mut CutOff,
    peer: &'static str,
) -> Result<Flow, ProxyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match kind {
        BodyKind::Length(n) => copy_exact(buf, src, dst, n, cut, peer).await,
        BodyKind::UntilClose => {
            while buf.fill_some(src).await? {
                let flow = emit(dst, buf.buffered(), cut).await?;
                buf.consume(buf.buffered().len());
                if flow == Flow::Cut {
                    return Ok(Flow::Cut);
                }
            }
            Ok(Flow::Complete)
        }
        BodyKind::Chunked => loop {
            let line = buf.read_line(src, peer).await?;
            if emit(dst, &line, cut).await? == Flow::Cut {
                return Ok(Flow::Cut);
            }
            let size = chunk_size(&line)?;
            if size == 0 {
                // Trailer fields, then the empty line that ends the message.
                loop {
                    let line = buf.read_line(src, peer).await?;
                    if emit(dst, &line, cut).await? == Flow::Cut {
                        return Ok(Flow::Cut);
                    }
                    if line == b"\r\n" || line == b"\n" {
                        return Ok(Flow::Complete);
                    }
                }
            }
            if copy_exact(buf, src, dst, size, cut, peer).await? == Flow::Cut {
                return Ok(Flow::Cut);
            }
            let end = buf.read_line(src, peer).await?;
            if end != b"\r\n" && end != b"\n" {
                return Err(ProxyError::malformed("chunk data not followed by CRLF"));
            }
            if emit(dst, &end, cut).await? == Flow::Cut {
                return Ok(Flow::Cut);
            }
        },
    }
}

/// Copies exactly `n` bytes.
async fn copy_exact<R, W>(
    buf: &mut ReadBuf,
    src: &mut R,
    dst: &mut W,
    mut n: u64,
    cut: &mut CutOff,
    peer: &'static str,
) -> Result<Flow, ProxyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    while n > 0 {
        if !buf.fill_some(src).await? {
            return Err(ProxyError::Truncated(peer));
        }
        let take = buf
            .buffered()
            .len()
            .min(usize::try_from(n).unwrap_or(usize::MAX));
        let flow = emit(dst, &buf.buffered()[..take], cut).await?;
        buf.consume(take);
        n -= take as u64;
        if flow == Flow::Cut {
            return Ok(Flow::Cut);
        }
    }
    Ok(Flow::Complete)
}

/// The size announced by a chunk-size line (`1a2b;ext=1\r\n`).
fn chunk_size(line: &[u8]) -> Result<u64, ProxyError> {
    let text = std::str::from_utf8(line).map_err(|_| ProxyError::malformed("chunk-size line"))?;
    let digits = text.split(';').next().unwrap_or_default().trim();
    if digits.is_empty() || digits.len() > 15 {
        return Err(ProxyError::malformed(format!("chunk size {digits:?}")));
    }
    u64::from_str_radix(digits, 16)
        .map_err(|_| ProxyError::malformed(format!("chunk size {digits:?}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    async fn copy(input: &[u8], kind: BodyKind, cut: CutOff) -> (Flow, Vec<u8>, Vec<u8>) {
        let mut src = input;
        let mut buf = ReadBuf::default();
        let mut out = Vec::new();
        let mut cut = cut;
        let flow = copy_body(&mut buf, &mut src, &mut out, kind, &mut cut, "test")
            .await
            .unwrap();
        let rest = [buf.buffered(), src].concat();
        (flow, out, rest)
    }

    #[tokio::test]
    async fn chunked_body_with_trailers() {
        let body = b"5;ext=x\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Sum: 1\r\n\r\nNEXT";
        let (flow, out, rest) = copy(body, BodyKind::Chunked, None).await;
        assert_eq!(flow, Flow::Complete);
        assert_eq!(out, &body[..body.len() - 4]);
        assert_eq!(rest, b"NEXT");
    }

    #[tokio::test]
    async fn cut_points() {
        let body = b"3\r\nabc\r\n0\r\n\r\n";
        for at in 0..body.len() as u64 {
            let (flow, out, _) = copy(body, BodyKind::Chunked, Some(at)).await;
            assert_eq!(flow, Flow::Cut, "cut at {at}");
            assert_eq!(out, &body[..at as usize]);
        }
        let (flow, out, _) = copy(b"0123456789xyz", BodyKind::Length(10), Some(4)).await;
        assert_eq!((flow, out.as_slice()), (Flow::Cut, &b"0123"[..]));
        let (flow, out, rest) = copy(b"0123456789xyz", BodyKind::Length(10), Some(11)).await;
        assert_eq!(
            (flow, out.as_slice(), rest.as_slice()),
            (Flow::Complete, &b"0123456789"[..], &b"xyz"[..])
        );
    }

    #[tokio::test]
    async fn truncated_and_until_close() {
        let mut src: &[u8] = b"0123";
        let mut buf = ReadBuf::default();
        let mut out = Vec::new();
        let err = copy_body(
            &mut buf,
            &mut src,
            &mut out,
            BodyKind::Length(10),
            &mut None,
            "peer",
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ProxyError::Truncated("peer")));
        let (flow, out, _) = copy(b"all of it", BodyKind::UntilClose, None).await;
        assert_eq!((flow, out.as_slice()), (Flow::Complete, &b"all of it"[..]));
    }

    #[tokio::test]
    async fn heads() {
        let mut src: &[u8] =
            b"\r\nPUT /b/k?partNumber=1&uploadId=x HTTP/1.1\r\nHost: a\r\ncontent-length: 3\r\nExpect: 100-continue\r\n\r\nabcGET / HTTP/1.0\r\n\r\n";
        let mut buf = ReadBuf::default();
        let head = buf.read_head(&mut src, "client").await.unwrap().unwrap();
        let req = RequestHead::parse(head).unwrap();
        assert_eq!(req.method, "PUT");
        assert_eq!(req.path(), "/b/k");
        assert!(req.has_query("uploadId") && req.has_query("partNumber") && !req.has_query("x"));
        assert_eq!(req.body_kind().unwrap(), BodyKind::Length(3));
        assert!(req.expects_continue() && req.keeps_alive());
        assert_eq!(req.headers.get("HOST"), Some("a"));
        assert_eq!(buf.buffered()[..3], *b"abc");
        buf.consume(3);
        let req =
            RequestHead::parse(buf.read_head(&mut src, "client").await.unwrap().unwrap()).unwrap();
        assert!(!req.keeps_alive());
        assert!(buf.read_head(&mut src, "client").await.unwrap().is_none());

        let resp = ResponseHead::parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n"
                .to_vec(),
        )
        .unwrap();
        assert_eq!(resp.body_kind("GET").unwrap(), BodyKind::Chunked);
        assert_eq!(resp.body_kind("HEAD").unwrap(), BodyKind::Length(0));
        assert!(!resp.keeps_alive());
        let resp =
            ResponseHead::parse(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n".to_vec())
                .unwrap();
        assert_eq!(resp.body_kind("GET").unwrap(), BodyKind::Length(0));
        let resp = ResponseHead::parse(b"HTTP/1.1 200 OK\r\n\r\n".to_vec()).unwrap();
        assert_eq!(resp.body_kind("GET").unwrap(), BodyKind::UntilClose);
        assert!(ResponseHead::parse(b"HTTP/1.1 2x OK\r\n\r\n".to_vec()).is_err());
        let bad = RequestHead::parse(
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".to_vec(),
        )
        .unwrap();
        assert!(bad.body_kind().is_err());
    }
}
