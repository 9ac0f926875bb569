//! The accept loop: hyper's HTTP/1 connections with time limits and a cap on how many are
//! served at once.
//!
//! `axum::serve` offers neither. Without a header read timeout a connection that never
//! finishes its request headers is held forever, and enough of them exhaust the process's
//! file descriptors, after which nobody is served.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::Sleep;

/// Serves `app` on `listener` until the process ends: at most `max_connections` at once,
/// each closed when its client takes longer than `timeout` to send a request's headers
/// (an idle keep-alive connection included) or to take any byte of a response.
pub(super) async fn accept_loop(
    listener: TcpListener,
    app: Router,
    max_connections: usize,
    timeout: Duration,
) -> io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    let mut failing = false;
    loop {
        // A slot is taken before accepting: connections beyond the cap wait in the kernel's
        // listen queue, where they hold none of this process's descriptors.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return Err(io::Error::other("the connection limiter was closed"));
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                if failing {
                    eprintln!("accepting connections again");
                    failing = false;
                }
                stream
            }
            // The client gave up before it was accepted; nothing is wrong with the server.
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                // Out of descriptors, typically: they free up as connections close (within
                // the timeout), so wait instead of failing or spinning.
                if !failing {
                    eprintln!("warning: cannot accept connections ({e}); retrying every second");
                    failing = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Small answers go out at once instead of waiting for an acknowledgement (Nagle).
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(timeout)
                .max_buf_size(super::refusals::HEAD_LIMIT);
            let io = TokioIo::new(WriteDeadline::new(
                super::refusals::ExplainRefusals::new(stream),
                timeout,
            ));
            // The errors left here are the client's (a timeout, a reset, a malformed request,
            // which hyper has answered where it could); the connection just ends.
            let _ = http.serve_connection(io, service).await;
        });
    }
}

/// Errors of one incoming connection (the client left before it was accepted), after which
/// accepting the next works at once.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// A connection whose writes fail once the peer has taken no byte for `limit`: hyper waits
/// for the socket to take a response for as long as that lasts, so a client that never
/// reads would keep its connection (and slot) forever.
struct WriteDeadline<T> {
    inner: T,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteDeadline<T> {
    fn new(inner: T, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Passes a write's outcome on, or — while it is pending — fails it once the peer has
    /// taken nothing for the whole limit.
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let limit = self.limit;
                let timer = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client took no part of the response in time",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, polled)
    }
}
