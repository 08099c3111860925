//! One client connection: a TCP stream, a receive buffer that packets are decoded from,
//! and an output buffer that packets are encoded into and written with one call.

use crate::mqtt::{self, Packet};
use bytes::BytesMut;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// How long a CONNECT or SUBSCRIBE may wait for its acknowledgement.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
const KEEP_ALIVE_SECS: u16 = 3600;

pub struct Conn {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    rbuf: BytesMut,
    read_chunk: usize,
    pub out: BytesMut,
    next_pkid: u16,
}

pub fn timeout_error(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("timed out: {what}"))
}

impl Conn {
    /// Connects, sends CONNECT and waits for a successful CONNACK; returns the connection
    /// and the session-present flag. The keep alive outlasts any run, so no PINGREQ is
    /// ever due (rumqttd refuses a keep alive of 0).
    pub async fn open(addr: SocketAddr, client_id: &str, clean: bool) -> io::Result<(Conn, bool)> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (rd, wr) = stream.into_split();
        let mut conn = Conn {
            rd,
            wr,
            rbuf: BytesMut::new(),
            read_chunk: 32 * 1024,
            out: BytesMut::new(),
            next_pkid: 0,
        };
        mqtt::connect(&mut conn.out, client_id, clean, KEEP_ALIVE_SECS);
        conn.flush().await?;
        let wait = async {
            match conn.next().await? {
                Packet::ConnAck {
                    session_present,
                    code: 0,
                } => Ok(session_present),
                Packet::ConnAck { code, .. } => {
                    Err(io::Error::other(format!("CONNACK refused: code {code}")))
                }
                other => Err(io::Error::other(format!("{other:?} before CONNACK"))),
            }
        };
        let present = tokio::time::timeout(HANDSHAKE_TIMEOUT, wait)
            .await
            .map_err(|_| timeout_error("CONNACK"))??;
        Ok((conn, present))
    }

    /// Connections held by the thousand read little: keep their buffers small.
    pub fn set_read_chunk(&mut self, bytes: usize) {
        self.read_chunk = bytes;
    }

    /// Gives back the buffers' memory (for connections that only sit idle).
    pub fn shrink(&mut self) {
        self.rbuf = BytesMut::new();
        self.out = BytesMut::new();
    }

    pub fn next_pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        self.next_pkid
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.wr.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Waits for more bytes; end of stream is an error (the broker closed on us).
    pub async fn read_more(&mut self) -> io::Result<()> {
        if self.rbuf.capacity() - self.rbuf.len() < self.read_chunk / 4 {
            self.rbuf.reserve(self.read_chunk);
        }
        if self.rd.read_buf(&mut self.rbuf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by the broker",
            ));
        }
        Ok(())
    }

    /// Reads whatever is already available without waiting; true if anything came.
    pub fn try_read_more(&mut self) -> io::Result<bool> {
        if self.rbuf.capacity() - self.rbuf.len() < self.read_chunk / 4 {
            self.rbuf.reserve(self.read_chunk);
        }
        match self.rd.try_read_buf(&mut self.rbuf) {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by the broker",
            )),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A packet already in the receive buffer, if a whole one is there.
    pub fn buffered(&mut self) -> io::Result<Option<Packet>> {
        Ok(mqtt::decode(&mut self.rbuf)?.map(|(packet, _)| packet))
    }

    /// The next packet, reading as needed.
    pub async fn next(&mut self) -> io::Result<Packet> {
        loop {
            if let Some(packet) = self.buffered()? {
                return Ok(packet);
            }
            self.read_more().await?;
        }
    }

    /// Subscribes to `filters` and waits for the SUBACK; every filter must be granted.
    pub async fn subscribe(&mut self, filters: &[&str], qos: u8) -> io::Result<()> {
        let pkid = self.next_pkid();
        mqtt::subscribe(&mut self.out, pkid, filters, qos);
        self.flush().await?;
        let wait = async {
            loop {
                match self.next().await? {
                    Packet::SubAck { pkid: id, codes } if id == pkid => {
                        if codes.contains(&0x80) {
                            return Err(io::Error::other("SUBACK refused a filter"));
                        }
                        return Ok(());
                    }
                    Packet::Other(mqtt::PINGRESP) => {}
                    other => return Err(io::Error::other(format!("{other:?} before SUBACK"))),
                }
            }
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, wait)
            .await
            .map_err(|_| timeout_error("SUBACK"))?
    }

    /// Sends DISCONNECT and closes.
    pub async fn disconnect(mut self) -> io::Result<()> {
        mqtt::disconnect(&mut self.out);
        self.flush().await?;
        self.wr.shutdown().await
    }
}
