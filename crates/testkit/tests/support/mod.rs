//! A tiny in-memory HTTP/1.1 object server and a raw HTTP/1.1 client for the proxy tests.
//!
//! The server keeps objects in a map keyed by path and records every request it receives,
//! byte for byte. It speaks keep-alive, `Content-Length` and chunked bodies (both ways) and
//! `Expect: 100-continue`, and answers `HEAD` for a missing key like Garage does (404 with a
//! `Content-Length` but no body).

#![allow(dead_code)]

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// The exact bytes of the request: head and body framing.
    pub raw: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The in-memory object server.
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    objects: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let objects = Arc::new(Mutex::new(HashMap::new()));
        let (s, o) = (Arc::clone(&seen), Arc::clone(&objects));
        let task = tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (s, o) = (Arc::clone(&s), Arc::clone(&o));
                tokio::spawn(async move {
                    let _ = serve(stream, s, o).await;
                });
            }
        });
        Upstream {
            addr,
            seen,
            objects,
            task,
        }
    }

    /// All requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn put(&self, key: &str, data: Vec<u8>) {
        self.objects.lock().unwrap().insert(key.to_owned(), data);
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.objects.lock().unwrap().get(key).cloned()
    }
}

/// Bytes read from a socket, not yet consumed.
struct Input {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Input {
    async fn more(&mut self) -> io::Result<usize> {
        let mut chunk = vec![0; 64 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// The next head, or None at a clean end of stream.
    async fn head(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok(Some(self.buf.drain(..i + 4).collect()));
            }
            if self.more().await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(eof())
                };
            }
        }
    }

    async fn exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.more().await? == 0 {
                return Err(eof());
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    async fn line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                return Ok(self.buf.drain(..=i).collect());
            }
            if self.more().await? == 0 {
                return Err(eof());
            }
        }
    }

    /// Reads a body; returns (decoded, raw).
    async fn body(&mut self, headers: &[(String, String)]) -> io::Result<(Vec<u8>, Vec<u8>)> {
        if header(headers, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            let (mut decoded, mut raw) = (Vec::new(), Vec::new());
            loop {
                let line = self.line().await?;
                raw.extend_from_slice(&line);
                let text = String::from_utf8_lossy(&line);
                let size =
                    usize::from_str_radix(text.split(';').next().unwrap().trim(), 16).unwrap();
                if size == 0 {
                    loop {
                        let line = self.line().await?;
                        raw.extend_from_slice(&line);
                        if line == b"\r\n" {
                            return Ok((decoded, raw));
                        }
                    }
                }
                let data = self.exact(size + 2).await?;
                decoded.extend_from_slice(&data[..size]);
                raw.extend_from_slice(&data);
            }
        }
        let n = header(headers, "content-length").map_or(0, |v| v.parse().unwrap());
        let data = self.exact(n).await?;
        Ok((data.clone(), data))
    }
}

fn eof() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "connection closed mid-message",
    )
}

fn parse_head(raw: &[u8]) -> (String, Vec<(String, String)>) {
    let text = String::from_utf8(raw.to_vec()).unwrap();
    let mut lines = text.split("\r\n");
    let start = lines.next().unwrap().to_owned();
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.to_owned(), v.trim().to_owned())
        })
        .collect();
    (start, headers)
}

async fn serve(
    stream: TcpStream,
    seen: Arc<Mutex<Vec<Seen>>>,
    objects: Arc<Mutex<HashMap<String, Vec<u8>>>>,
) -> io::Result<()> {
    let mut input = Input {
        stream,
        buf: Vec::new(),
    };
    while let Some(head) = input.head().await? {
        let (start, headers) = parse_head(&head);
        let mut parts = start.split(' ');
        let method = parts.next().unwrap().to_owned();
        let target = parts.next().unwrap().to_owned();
        if header(&headers, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
            input
                .stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await?;
        }
        let (body, raw_body) = input.body(&headers).await?;
        let close = header(&headers, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let drop_after = header(&headers, "x-test-drop-connection").is_some();
        seen.lock().unwrap().push(Seen {
            method: method.clone(),
            target: target.clone(),
            headers: headers.clone(),
            raw: [head.as_slice(), raw_body.as_slice()].concat(),
        });

        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let extra = if close { "Connection: close\r\n" } else { "" };
        let response = match method.as_str() {
            "GET" => match objects.lock().unwrap().get(path).cloned() {
                Some(data) if query.split('&').any(|p| p == "chunked") => {
                    let mut out =
                        format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n{extra}\r\n")
                            .into_bytes();
                    for chunk in data.chunks(1000) {
                        out.extend_from_slice(format!("{:x};n=1\r\n", chunk.len()).as_bytes());
                        out.extend_from_slice(chunk);
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(b"0\r\nX-Trailer: done\r\n\r\n");
                    out
                }
                Some(data) => {
                    let mut out = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{extra}\r\n",
                        data.len()
                    )
                    .into_bytes();
                    out.extend_from_slice(&data);
                    out
                }
                None => not_found(extra, true),
            },
            "HEAD" => match objects.lock().unwrap().get(path) {
                Some(data) => format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{extra}\r\n",
                    data.len()
                )
                .into_bytes(),
                None => not_found(extra, false),
            },
            "PUT" => {
                objects.lock().unwrap().insert(path.to_owned(), body);
                format!("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n{extra}\r\n").into_bytes()
            }
            "POST" => {
                let text = "<Result/>";
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{extra}\r\n{text}",
                    text.len()
                )
                .into_bytes()
            }
            "DELETE" => {
                objects.lock().unwrap().remove(path);
                format!("HTTP/1.1 204 No Content\r\n{extra}\r\n").into_bytes()
            }
            _ => format!("HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n{extra}\r\n")
                .into_bytes(),
        };
        input.stream.write_all(&response).await?;
        if close || drop_after {
            return Ok(());
        }
    }
    Ok(())
}

/// A 404 like Garage's: an XML body, left out (but still announced) for HEAD.
fn not_found(extra: &str, with_body: bool) -> Vec<u8> {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code></Error>";
    let mut out = format!(
        "HTTP/1.1 404 Not Found\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    if with_body {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// A parsed response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The decoded body.
    pub body: Vec<u8>,
    /// The exact bytes received.
    pub raw: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// How a connection ended, as seen by [`Client::read_to_close`].
#[derive(Debug)]
pub struct Ending {
    /// Everything received.
    pub bytes: Vec<u8>,
    /// Ok for a clean close (FIN), else the read error (e.g. connection reset).
    pub result: io::Result<()>,
    /// When the last byte arrived (None if none did).
    pub last_byte_at: Option<Instant>,
    /// When the connection ended.
    pub ended_at: Instant,
}

impl Ending {
    /// The announced Content-Length and the number of body bytes received, if a whole head
    /// arrived.
    pub fn content_length_and_body(&self) -> Option<(usize, usize)> {
        let end = self.bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let (_, headers) = parse_head(&self.bytes[..end]);
        let length = header(&headers, "content-length")?.parse().ok()?;
        Some((length, self.bytes.len() - end))
    }
}

/// A raw HTTP/1.1 client over one TCP connection.
pub struct Client {
    input: Input,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            input: Input {
                stream,
                buf: Vec::new(),
            },
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.input.stream.write_all(bytes).await
    }

    /// Reads one response to a request with `method`.
    pub async fn response(&mut self, method: &str) -> io::Result<Response> {
        let head = self.input.head().await?.ok_or_else(eof)?;
        let (start, headers) = parse_head(&head);
        let status: u16 = start.split(' ').nth(1).unwrap().parse().unwrap();
        let (body, raw_body) = if method == "HEAD" || status == 204 || (100..200).contains(&status)
        {
            (Vec::new(), Vec::new())
        } else {
            self.input.body(&headers).await?
        };
        Ok(Response {
            status,
            headers,
            body,
            raw: [head, raw_body].concat(),
        })
    }

    /// Sends a request with a Content-Length body (none for an empty body and no-body
    /// methods) and reads the response.
    pub async fn request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let bytes = request_bytes(method, target, headers, body);
        self.send(&bytes).await?;
        self.response(method).await
    }

    /// Reads until the peer closes the connection or it fails.
    pub async fn read_to_close(&mut self) -> Ending {
        let mut bytes = std::mem::take(&mut self.input.buf);
        let mut last_byte_at = (!bytes.is_empty()).then(Instant::now);
        let mut chunk = vec![0; 64 * 1024];
        let result = loop {
            match tokio::time::timeout(Duration::from_secs(20), self.input.stream.read(&mut chunk))
                .await
            {
                Err(_) => {
                    break Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no close within 20 s",
                    ));
                }
                Ok(Ok(0)) => break Ok(()),
                Ok(Ok(n)) => {
                    bytes.extend_from_slice(&chunk[..n]);
                    last_byte_at = Some(Instant::now());
                }
                Ok(Err(e)) => break Err(e),
            }
        };
        Ending {
            bytes,
            result,
            last_byte_at,
            ended_at: Instant::now(),
        }
    }
}

/// The bytes of a request with a Content-Length body.
pub fn request_bytes(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: proxy.test\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "PUT" || method == "POST" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    [out.into_bytes(), body.to_vec()].concat()
}

/// Deterministic test data.
pub fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u8)
                .wrapping_mul(31)
                .wrapping_add(seed ^ (i >> 12) as u8)
        })
        .collect()
}
