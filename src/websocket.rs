//! MQTT over WebSocket: the binary frames of a WebSocket as one byte stream, so that
//! the same connection handler serves it. A frame may hold part of a packet or several
//! packets; text frames are refused; pings are answered by the WebSocket layer.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub struct WsStream<S> {
    inner: WebSocketStream<S>,
    /// What is left of the last binary frame received.
    unread: Bytes,
    /// Frames were queued and not yet flushed.
    unflushed: bool,
}

impl<S> WsStream<S> {
    pub fn new(inner: WebSocketStream<S>) -> WsStream<S> {
        WsStream {
            inner,
            unread: Bytes::new(),
            unflushed: false,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    /// Pushes queued frames out; `Pending` until they are.
    fn poll_push(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.unflushed {
            ready!(Pin::new(&mut self.inner).poll_flush(cx)).map_err(io::Error::other)?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Frames queued by the last write go out while the connection waits to read.
        if let Poll::Ready(Err(e)) = this.poll_push(cx) {
            return Poll::Ready(Err(e));
        }
        loop {
            if !this.unread.is_empty() {
                let n = buf.remaining().min(this.unread.len());
                buf.put_slice(&this.unread[..n]);
                this.unread.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.inner).poll_next(cx)) {
                // End of stream, or the peer's close frame (answered by the layer).
                None | Some(Ok(Message::Close(_))) => return Poll::Ready(Ok(())),
                Some(Ok(Message::Binary(data))) => this.unread = data,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text frame: MQTT over WebSocket is carried in binary frames",
                    )))
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_push(cx))?;
        ready!(Pin::new(&mut this.inner).poll_ready(cx)).map_err(io::Error::other)?;
        let frame = Message::Binary(Bytes::copy_from_slice(buf));
        Pin::new(&mut this.inner)
            .start_send(frame)
            .map_err(io::Error::other)?;
        this.unflushed = true;
        // Out at once if the socket takes it; otherwise by the next write or read.
        if let Poll::Ready(Err(e)) = this.poll_push(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.unflushed = true;
        this.poll_push(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner)
            .poll_close(cx)
            .map_err(io::Error::other)
    }
}
