//! A bound on the size of one PostgreSQL frontend message, enforced when its length arrives, before its body does.
//!
//! pgwire accepts a `Query`, `Parse` or `Bind` message of up to 1 GiB and buffers all of it before anything looks at
//! the statement, so a few connections could hold gigabytes. [`MessageSizeCap`] sits between the (decrypted) socket
//! and pgwire's codec and follows the message framing as bytes pass: a message announcing more than
//! [`MAX_FRONTEND_MESSAGE_BYTES`] ends the connection with [`MessageTooLarge`] after reading just its header.
//! Statements between the statement bound ([`MAX_STATEMENT_BYTES`]) and this cap still reach the statement gate,
//! which refuses them with SQLSTATE 54001 and keeps the connection, as PostgreSQL does for a long statement; beyond
//! the cap the connection is closed, as PostgreSQL closes it on an invalid message length.

use crate::query::gate::MAX_STATEMENT_BYTES;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes one frontend message may announce (length field included): room for a statement of
/// [`MAX_STATEMENT_BYTES`] and as much again for its parameters.
pub const MAX_FRONTEND_MESSAGE_BYTES: usize = 2 * MAX_STATEMENT_BYTES;

/// The protocol codes that make the message after them untyped as well (the startup packet follows them).
const SSL_REQUEST_CODE: u32 = 80_877_103;
const GSSENC_REQUEST_CODE: u32 = 80_877_104;

/// A frontend message announced more bytes than [`MAX_FRONTEND_MESSAGE_BYTES`] (or an impossible length).
#[derive(Debug, thiserror::Error)]
#[error(
    "a protocol message of {announced} bytes is more than the {MAX_FRONTEND_MESSAGE_BYTES} a message may have \
     (a statement may have at most {MAX_STATEMENT_BYTES} bytes)"
)]
pub struct MessageTooLarge {
    /// The length the message's header announced (negative lengths as read, widened).
    pub announced: i64,
}

/// Where the byte stream stands in the frontend's message framing.
#[derive(Debug)]
struct Framing {
    /// Messages before the startup packet have no type byte (`length, code, …`).
    untyped: bool,
    header: [u8; 8],
    have: usize,
    body_left: u64,
}

impl Framing {
    fn new() -> Self {
        Framing { untyped: true, header: [0; 8], have: 0, body_left: 0 }
    }

    /// The header of an untyped message is its length and protocol code, of a typed one its type and length.
    fn header_len(&self) -> usize {
        if self.untyped {
            8
        } else {
            5
        }
    }

    /// Follows `bytes`, the next bytes the client sent.
    fn observe(&mut self, mut bytes: &[u8]) -> Result<(), MessageTooLarge> {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let n = bytes.len().min(usize::try_from(self.body_left).unwrap_or(usize::MAX));
                self.body_left -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let want = self.header_len() - self.have;
            let n = want.min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have < self.header_len() {
                continue;
            }
            self.have = 0;
            let (length_at, header_in_length) = if self.untyped { (0, 8) } else { (1, 4) };
            let field = [
                self.header[length_at],
                self.header[length_at + 1],
                self.header[length_at + 2],
                self.header[length_at + 3],
            ];
            let announced = i64::from(i32::from_be_bytes(field));
            if announced < header_in_length || announced > MAX_FRONTEND_MESSAGE_BYTES as i64 {
                return Err(MessageTooLarge { announced });
            }
            self.body_left = (announced - header_in_length) as u64;
            if self.untyped {
                let code = u32::from_be_bytes([self.header[4], self.header[5], self.header[6], self.header[7]]);
                self.untyped = code == SSL_REQUEST_CODE || code == GSSENC_REQUEST_CODE;
            }
        }
        Ok(())
    }
}

/// A socket whose incoming frontend messages may announce at most [`MAX_FRONTEND_MESSAGE_BYTES`]; a read that
/// meets a larger one fails with an `InvalidData` error whose source is [`MessageTooLarge`].
#[derive(Debug)]
pub struct MessageSizeCap<S> {
    inner: S,
    framing: Framing,
}

impl<S> MessageSizeCap<S> {
    /// Wraps `inner`, whose next byte starts a message; `already_read` are bytes read from it before (pgwire's
    /// TLS negotiation peeks at the first message), followed as if they came through the cap.
    pub fn new(inner: S, already_read: &[u8]) -> Result<Self, MessageTooLarge> {
        let mut framing = Framing::new();
        framing.observe(already_read)?;
        Ok(MessageSizeCap { inner, framing })
    }

    /// Whether `e` is the cap's refusal, and of which message.
    pub fn refusal(e: &std::io::Error) -> Option<&MessageTooLarge> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<MessageTooLarge>())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for MessageSizeCap<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => match this.framing.observe(&buf.filled()[before..]) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(too_large) => {
                    buf.set_filled(before);
                    Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::InvalidData, too_large)))
                }
            },
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for MessageSizeCap<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup() -> Vec<u8> {
        let mut body = 196_608u32.to_be_bytes().to_vec();
        body.extend_from_slice(b"user\0bi\0\0");
        let mut m = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        m.extend(body);
        m
    }

    fn typed(kind: u8, body_len: usize) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&((body_len + 4) as i32).to_be_bytes());
        m.extend(std::iter::repeat_n(b'x', body_len));
        m
    }

    #[test]
    fn messages_up_to_the_cap_pass_in_any_slicing() {
        let mut stream = 8i32.to_be_bytes().to_vec();
        stream.extend_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
        stream.extend(startup());
        stream.extend(typed(b'p', 10));
        stream.extend(typed(b'Q', MAX_FRONTEND_MESSAGE_BYTES - 4));
        stream.extend(typed(b'S', 0));
        for chunk in [1, 3, 7, 4096, stream.len()] {
            let mut f = Framing::new();
            for piece in stream.chunks(chunk) {
                f.observe(piece).unwrap();
            }
            assert_eq!((f.have, f.body_left, f.untyped), (0, 0, false), "chunks of {chunk}");
        }
    }

    #[test]
    fn a_message_over_the_cap_is_refused_at_its_header() {
        let mut f = Framing::new();
        f.observe(&startup()).unwrap();
        let header = typed(b'Q', MAX_FRONTEND_MESSAGE_BYTES - 3);
        let e = f.observe(&header[..5]).unwrap_err();
        assert_eq!(e.announced, MAX_FRONTEND_MESSAGE_BYTES as i64 + 1);
        // An impossible length (negative, or shorter than the length field) too.
        let mut f = Framing::new();
        f.observe(&startup()).unwrap();
        assert!(f.observe(&[b'Q', 0xff, 0xff, 0xff, 0xff]).is_err());
        let mut f = Framing::new();
        f.observe(&startup()).unwrap();
        assert!(f.observe(&[b'Q', 0, 0, 0, 3]).is_err());
    }

    #[tokio::test]
    async fn the_socket_fails_with_the_refusal() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut capped = MessageSizeCap::new(server, &startup()).unwrap();
        client.write_all(&typed(b'Q', 5)).await.unwrap();
        client.write_all(&typed(b'Q', MAX_FRONTEND_MESSAGE_BYTES)[..5]).await.unwrap();
        let mut got = Vec::new();
        let e = loop {
            let mut buf = [0u8; 7];
            match capped.read(&mut buf).await {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break e,
            }
        };
        assert!(got.starts_with(&typed(b'Q', 5)), "the message under the cap came through");
        assert_eq!(MessageSizeCap::<()>::refusal(&e).map(|r| r.announced), Some(MAX_FRONTEND_MESSAGE_BYTES as i64 + 4));
    }
}
