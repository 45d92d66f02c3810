//! The proxy itself: accepting connections, forwarding exchanges, and carrying out the faults
//! and policies of the current [`FaultPlan`].

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::error::ProxyError;
use crate::http::{self, BodyKind, CutOff, Flow, ReadBuf, RequestHead, ResponseHead};
use crate::plan::{Counters, Draw, Event, Fault, FaultCounts, FaultPlan, SplitMix64};
use crate::s3::{self, Existence, Policy, S3Credentials};

/// Request bodies up to this size are read and dropped before a refusal is sent; the
/// connection is closed instead of reading larger ones.
const DISCARD_LIMIT: u64 = 1024 * 1024;
/// How far into a chunked body (whose length is unknown) a cut may fall.
const CHUNKED_CUT_RANGE: u64 = 4096;
/// How long a closing connection keeps reading what the client still sends, so that the
/// client sees the last response rather than a reset.
const LINGER: Duration = Duration::from_secs(2);

/// A TCP proxy for HTTP/1.1 traffic between an S3 client and an S3 server that injects
/// network faults and enforces an append-only policy, according to a [`FaultPlan`].
///
/// It forwards bytes unchanged (so SigV4 signatures made for the proxy's address stay valid),
/// parsing just enough HTTP to know where each request and response on a keep-alive connection
/// ends. Each client connection gets its own upstream connection. Dropping the proxy stops it
/// as well; [`shutdown`](Self::shutdown) also waits until every connection is closed.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// State shared by the proxy handle and all connections.
#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    credentials: Option<S3Credentials>,
    plan: Mutex<PlanState>,
    counters: Counters,
}

/// The current plan and the generator its random choices come from.
#[derive(Debug)]
struct PlanState {
    plan: FaultPlan,
    rng: SplitMix64,
    /// Requests seen since the plan was set.
    seen: u64,
}

/// What one request is in for.
#[derive(Clone, Copy, Debug)]
struct RequestPlan {
    draw: Draw,
    stall_for: Duration,
    deny_delete: bool,
    deny_overwrite: bool,
}

impl Shared {
    /// Draws the fate of the next request from the current plan.
    fn next_request(&self) -> RequestPlan {
        let mut state = self.plan.lock().unwrap_or_else(PoisonError::into_inner);
        let PlanState { plan, rng, seen } = &mut *state;
        *seen += 1;
        let mut draw = plan.draw(rng);
        if *seen <= plan.spare_first {
            draw.fault = None;
        }
        RequestPlan {
            draw,
            stall_for: plan.stall_for,
            deny_delete: plan.deny_delete,
            deny_overwrite: plan.deny_overwrite,
        }
    }
}

impl FaultProxy {
    /// Listens on `127.0.0.1:0` and forwards to `upstream`, injecting faults according to
    /// `plan`. The existence checks of [`FaultPlan::deny_overwrite`] are sent unsigned; use
    /// [`start_with_credentials`](Self::start_with_credentials) for servers that require
    /// signed requests.
    pub async fn start(upstream: SocketAddr, plan: FaultPlan) -> std::io::Result<FaultProxy> {
        Self::start_with_credentials(upstream, plan, None).await
    }

    /// Like [`start`](Self::start), but signs the proxy's own existence checks with
    /// `credentials` (AWS SigV4), as S3 servers such as Garage require. Pass
    /// [`S3Credentials::from_env`] to use the client's credentials from the environment.
    pub async fn start_with_credentials(
        upstream: SocketAddr,
        plan: FaultPlan,
        credentials: Option<S3Credentials>,
    ) -> std::io::Result<FaultProxy> {
        Self::start_at((Ipv4Addr::LOCALHOST, 0).into(), upstream, plan, credentials).await
    }

    /// Like [`start_with_credentials`](Self::start_with_credentials), listening on `listen`:
    /// a proxy shut down to cut a site off can come back at the same address, which
    /// repository locations recorded elsewhere still name.
    pub async fn start_at(
        listen: SocketAddr,
        upstream: SocketAddr,
        plan: FaultPlan,
        credentials: Option<S3Credentials>,
    ) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            credentials,
            plan: Mutex::new(PlanState {
                rng: SplitMix64::new(plan.seed),
                plan,
                seen: 0,
            }),
            counters: Counters::default(),
        });
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), stopped));
        Ok(FaultProxy {
            addr,
            shared,
            stop,
            task,
        })
    }

    /// The address clients should connect to (use `http://{addr}` as the S3 endpoint).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the plan for requests that arrive from now on, and restarts the random
    /// sequence from the new plan's seed.
    pub fn set_plan(&self, plan: FaultPlan) {
        let mut state = self
            .shared
            .plan
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.rng = SplitMix64::new(plan.seed);
        state.plan = plan;
        state.seen = 0;
    }

    /// How many requests arrived and how many faults fired so far.
    pub fn counts(&self) -> FaultCounts {
        self.shared.counters.snapshot()
    }

    /// Stops accepting, closes every connection, and waits until that is done.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            tracing::warn!("fault proxy task failed: {e}");
        }
    }
}

/// Accepts connections until `stopped` fires (or its sender is dropped), then aborts them all.
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let shared = Arc::clone(&shared);
                    connections.spawn(async move {
                        if let Err(e) = serve(shared, stream).await {
                            tracing::debug!(%peer, "proxied connection failed: {e}");
                        }
                    });
                }
                Err(e) => {
                    // Typically out of file descriptors: wait for some to be released.
                    tracing::warn!("fault proxy: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

/// What to do with the client connection after an exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// Wait for the next request.
    KeepAlive,
    /// Close it gracefully: FIN, then read and drop what the client still sends.
    Close,
    /// It has been dealt with (reset, stalled or truncated); just drop it.
    Drop,
}

/// How the forwarding of one exchange ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exchange {
    /// Both messages were forwarded completely.
    Done {
        /// Whether client and server both let the connection stay open.
        keep_alive: bool,
    },
    /// The fault's cut-off point was reached.
    Cut,
}

/// One client connection and its upstream connection.
struct Conn {
    shared: Arc<Shared>,
    client: TcpStream,
    client_buf: ReadBuf,
    upstream: Option<(TcpStream, ReadBuf)>,
}

/// Serves one client connection until either side closes it or a fault ends it.
async fn serve(shared: Arc<Shared>, client: TcpStream) -> Result<(), ProxyError> {
    client.set_nodelay(true)?;
    let mut conn = Conn {
        shared,
        client,
        client_buf: ReadBuf::default(),
        upstream: None,
    };
    loop {
        let Some(raw) = conn.next_request_head().await? else {
            return Ok(());
        };
        conn.shared.counters.add(Event::Request);
        let plan = conn.shared.next_request();
        let req = RequestHead::parse(raw)?;
        match conn.handle(&req, &plan).await? {
            Next::KeepAlive => {}
            Next::Close => {
                conn.close_gracefully().await;
                return Ok(());
            }
            Next::Drop => return Ok(()),
        }
    }
}

impl Conn {
    /// Waits for the next request head. Returns `None` when the client closes the connection,
    /// or when the upstream server closes its idle connection (the client connection is then
    /// closed too, as a direct connection to the server would have been).
    async fn next_request_head(&mut self) -> Result<Option<Vec<u8>>, ProxyError> {
        let Some((upstream, upstream_buf)) = self.upstream.as_mut() else {
            return self.client_buf.read_head(&mut self.client, "client").await;
        };
        tokio::select! {
            head = self.client_buf.read_head(&mut self.client, "client") => head,
            read = upstream_buf.fill(upstream) => match read {
                Ok(0) => Ok(None),
                Ok(_) => Err(ProxyError::malformed("upstream sent bytes between responses")),
                Err(e) => Err(e),
            },
        }
    }

    /// Applies the policies and the fault to one request and forwards what is left to forward.
    async fn handle(&mut self, req: &RequestHead, plan: &RequestPlan) -> Result<Next, ProxyError> {
        let body = req.body_kind()?;
        match s3::classify(req) {
            Policy::Delete if plan.deny_delete => {
                return self
                    .refuse(req, body, "deletes are refused by the append-only policy")
                    .await;
            }
            Policy::Write if plan.deny_overwrite => {
                let upstream = self.shared.upstream;
                let check =
                    s3::object_exists(upstream, req, self.shared.credentials.as_ref()).await;
                let reason = match check {
                    Ok(Existence::Absent) => None,
                    Ok(Existence::Exists) => Some(
                        "the key exists and overwrites are refused by the append-only policy"
                            .to_owned(),
                    ),
                    Ok(Existence::Unknown(status)) => Some(format!(
                        "the proxy could not check that the key is new: its HEAD got status {status}"
                    )),
                    Err(e) => Some(format!(
                        "the proxy could not check that the key is new: {e}"
                    )),
                };
                if let Some(reason) = reason {
                    tracing::debug!(target = %req.target, "refusing a write: {reason}");
                    return self.refuse(req, body, &reason).await;
                }
            }
            _ => {}
        }

        let fault = plan.draw.fault;
        if fault == Some(Fault::Unavailable) {
            self.shared.counters.add(Event::Fault(Fault::Unavailable));
            return self.unavailable(req, body).await;
        }
        if self.upstream.is_none() {
            match connect(self.shared.upstream).await {
                Ok(stream) => self.upstream = Some((stream, ReadBuf::default())),
                Err(e) => {
                    let message = format!("the proxy could not connect to the server: {e}");
                    let response =
                        s3::error_response(req, 502, "Bad Gateway", "BadGateway", &message, false);
                    self.client.write_all(&response).await?;
                    return Ok(Next::Close);
                }
            }
        }
        match self.exchange(req, body, fault, plan.draw.bits).await? {
            Exchange::Done { keep_alive: true } => Ok(Next::KeepAlive),
            Exchange::Done { keep_alive: false } => Ok(Next::Close),
            Exchange::Cut => {
                let Some(fault) = fault else {
                    return Err(ProxyError::malformed("cut without a fault"));
                };
                self.shared.counters.add(Event::Fault(fault));
                self.carry_out(fault, plan.stall_for).await?;
                Ok(Next::Drop)
            }
        }
    }

    /// Forwards one request and its response, stopping at the fault's cut-off point.
    ///
    /// The request body and the response are forwarded concurrently, so that a server that
    /// answers before reading the whole body (or a client waiting for `100 Continue`) works.
    async fn exchange(
        &mut self,
        req: &RequestHead,
        body: BodyKind,
        fault: Option<Fault>,
        bits: [u64; 3],
    ) -> Result<Exchange, ProxyError> {
        let Some((upstream, upstream_buf)) = self.upstream.as_mut() else {
            return Err(ProxyError::malformed("no upstream connection"));
        };
        let (mut client_rd, mut client_wr) = self.client.split();
        let (mut upstream_rd, mut upstream_wr) = upstream.split();
        let client_buf = &mut self.client_buf;

        // Reset and stall cut the request body half of the time (when there is one).
        let mut request_cut: CutOff = match (fault, body) {
            (Some(Fault::Reset | Fault::Stall), BodyKind::Length(n))
                if n > 0 && bits[0] & 1 == 1 =>
            {
                Some(bits[1] % n)
            }
            (Some(Fault::Reset | Fault::Stall), BodyKind::Chunked) if bits[0] & 1 == 1 => {
                Some(bits[1] % CHUNKED_CUT_RANGE)
            }
            _ => None,
        };
        let send = async {
            upstream_wr.write_all(&req.raw).await?;
            http::copy_body(
                client_buf,
                &mut client_rd,
                &mut upstream_wr,
                body,
                &mut request_cut,
                "client",
            )
            .await
        };
        let receive = forward_response(
            upstream_buf,
            &mut upstream_rd,
            &mut client_wr,
            &req.method,
            fault,
            bits[2],
        );
        tokio::pin!(send, receive);
        let mut sent = false;
        loop {
            tokio::select! {
                flow = &mut send, if !sent => {
                    if flow? == Flow::Cut {
                        return Ok(Exchange::Cut);
                    }
                    sent = true;
                }
                received = &mut receive => {
                    return Ok(match received? {
                        Received::Cut => Exchange::Cut,
                        // A response that came before the whole request body: the connection
                        // is out of step and must be closed.
                        Received::Complete { keep_alive } => {
                            Exchange::Done { keep_alive: keep_alive && sent && req.keeps_alive() }
                        }
                    });
                }
            }
        }
    }

    /// Ends the exchange the way `fault` says, after its cut-off point was reached.
    async fn carry_out(&mut self, fault: Fault, stall_for: Duration) -> Result<(), ProxyError> {
        match fault {
            Fault::Reset => {
                // SO_LINGER 0: closing sends RST instead of FIN.
                self.client.set_zero_linger()?;
                if let Some((upstream, _)) = &self.upstream {
                    upstream.set_zero_linger()?;
                }
            }
            Fault::Stall => {
                tokio::time::sleep(stall_for).await;
                let _ = self.client.shutdown().await;
            }
            Fault::Truncate | Fault::Unavailable => {
                let _ = self.client.shutdown().await;
            }
        }
        self.upstream = None;
        Ok(())
    }

    /// Answers `403 AccessDenied` without forwarding the request.
    async fn refuse(
        &mut self,
        req: &RequestHead,
        body: BodyKind,
        message: &str,
    ) -> Result<Next, ProxyError> {
        self.shared.counters.add(Event::Denied);
        let keep_alive = req.keeps_alive() && self.discard_body(req, body).await?;
        let response =
            s3::error_response(req, 403, "Forbidden", "AccessDenied", message, keep_alive);
        self.client.write_all(&response).await?;
        Ok(if keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        })
    }

    /// Answers `503 Slow Down` without forwarding the request, and closes the connection.
    async fn unavailable(&mut self, req: &RequestHead, body: BodyKind) -> Result<Next, ProxyError> {
        self.discard_body(req, body).await?;
        let response = s3::error_response(
            req,
            503,
            "Slow Down",
            "SlowDown",
            "Please reduce your request rate (injected by the fault proxy).",
            false,
        );
        self.client.write_all(&response).await?;
        Ok(Next::Close)
    }

    /// Reads and drops the request body if it is small and the client is sending it (not
    /// waiting for `100 Continue`). Returns whether the whole body was read, i.e. whether the
    /// connection is still in step for another request.
    async fn discard_body(
        &mut self,
        req: &RequestHead,
        body: BodyKind,
    ) -> Result<bool, ProxyError> {
        match body {
            BodyKind::Length(0) => return Ok(true),
            BodyKind::Length(n) if n > DISCARD_LIMIT => return Ok(false),
            _ if req.expects_continue() => return Ok(false),
            _ => {}
        }
        // One byte more than the limit, so that a cut means the body was larger.
        let mut cut = Some(DISCARD_LIMIT + 1);
        let flow = http::copy_body(
            &mut self.client_buf,
            &mut self.client,
            &mut tokio::io::sink(),
            body,
            &mut cut,
            "client",
        )
        .await?;
        Ok(flow == Flow::Complete)
    }

    /// Sends FIN, then reads and drops whatever the client still sends for a while, so that
    /// unread data does not turn the close into a reset that could hide the last response.
    async fn close_gracefully(mut self) {
        self.upstream = None;
        if self.client.shutdown().await.is_err() {
            return;
        }
        let mut sink = tokio::io::sink();
        let drain = tokio::io::copy(&mut self.client, &mut sink);
        let _ = tokio::time::timeout(LINGER, drain).await;
    }
}

/// Connects to the upstream server.
async fn connect(upstream: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// How the forwarding of a response ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Received {
    /// The final response was forwarded completely.
    Complete {
        /// Whether the server lets the connection stay open.
        keep_alive: bool,
    },
    /// The fault's cut-off point was reached.
    Cut,
}

/// Forwards interim responses and then the final response to a `method` request, stopping at
/// the cut-off point that `fault` (with the random `bits`) puts into the final response.
async fn forward_response<R, W>(
    buf: &mut ReadBuf,
    upstream: &mut R,
    client: &mut W,
    method: &str,
    fault: Option<Fault>,
    bits: u64,
) -> Result<Received, ProxyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let raw = buf
            .read_head(upstream, "upstream")
            .await?
            .ok_or(ProxyError::Truncated("upstream"))?;
        let head = ResponseHead::parse(raw)?;
        if head.status == 101 {
            return Err(ProxyError::malformed("protocol upgrades are not supported"));
        }
        if head.is_interim() {
            client.write_all(&head.raw).await?;
            continue;
        }
        let body = head.body_kind(method)?;
        let mut cut = response_cut(fault, bits, head.raw.len() as u64, body);
        if http::emit(client, &head.raw, &mut cut).await? == Flow::Cut {
            return Ok(Received::Cut);
        }
        if http::copy_body(buf, upstream, client, body, &mut cut, "upstream").await? == Flow::Cut {
            return Ok(Received::Cut);
        }
        let keep_alive = head.keeps_alive() && body != BodyKind::UntilClose;
        return Ok(Received::Complete { keep_alive });
    }
}

/// Where in a response (counting from the first byte of its head) `fault` cuts it, such that
/// the client always notices: never after the last byte.
fn response_cut(fault: Option<Fault>, bits: u64, head_len: u64, body: BodyKind) -> CutOff {
    match (fault?, body) {
        (Fault::Reset | Fault::Stall, BodyKind::Length(n)) => Some(bits % (head_len + n)),
        // Somewhere in the head, or right after it.
        (Fault::Reset | Fault::Stall, BodyKind::Chunked) => Some(bits % (head_len + 1)),
        // Without a length the client cannot tell a short body: cut inside the head.
        (Fault::Reset | Fault::Stall, BodyKind::UntilClose) => Some(bits % head_len.max(1)),
        (Fault::Truncate, BodyKind::Length(n)) if n > 0 => Some(head_len + bits % n),
        // May fall after the end of a short body; then the fault does not fire.
        (Fault::Truncate, BodyKind::Chunked) => Some(head_len + bits % CHUNKED_CUT_RANGE),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_cuts_stay_inside_the_response() {
        for bits in 0..200 {
            for fault in [Fault::Reset, Fault::Stall] {
                assert!(
                    response_cut(Some(fault), bits, 10, BodyKind::Length(5))
                        .is_some_and(|c| c < 15)
                );
                assert!(
                    response_cut(Some(fault), bits, 10, BodyKind::Length(0))
                        .is_some_and(|c| c < 10)
                );
                assert!(
                    response_cut(Some(fault), bits, 10, BodyKind::Chunked).is_some_and(|c| c <= 10)
                );
            }
            let cut = response_cut(Some(Fault::Truncate), bits, 10, BodyKind::Length(5));
            assert!(cut.is_some_and(|c| (10..15).contains(&c)));
            assert_eq!(
                response_cut(Some(Fault::Truncate), bits, 10, BodyKind::Length(0)),
                None
            );
            assert_eq!(
                response_cut(Some(Fault::Truncate), bits, 10, BodyKind::UntilClose),
                None
            );
            assert_eq!(response_cut(None, bits, 10, BodyKind::Length(5)), None);
        }
    }
}
