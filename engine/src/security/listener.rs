//! The accept loop every server shares (the driver's gRPC and HTTP, the workers' shuffle
//! service): it bounds connections per peer address, runs each TLS handshake on its own
//! task with a deadline (a slow peer never stalls the others), and hands each connection
//! on with a [`PeerInfo`]: the address and the identity its certificate proves.
//!
//! tonic reads the [`PeerInfo`] from a request's extensions (our stream implements its
//! `Connected`); axum gets it as `ConnectInfo<PeerInfo>` (the listener implements its
//! `Listener`).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::identity::Identity;
use super::tls::ServerTls;

/// Bounds of a listener.
#[derive(Clone, Copy, Debug)]
pub struct ListenerLimits {
    /// Open connections from one peer address; more are closed at once.
    pub connections_per_peer: usize,
    /// Time a peer has to finish its TLS handshake.
    pub handshake_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits { connections_per_peer: 256, handshake_timeout: Duration::from_secs(10) }
    }
}

/// Who is on the other end of a connection.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// Its address.
    pub addr: SocketAddr,
    /// What its certificate proves: `None` over TLS without a client certificate (allowed
    /// only by the status pages, which then want a bearer token); `Some(Anonymous)` in
    /// plaintext.
    pub identity: Option<Identity>,
}

/// A listening socket handing out authenticated connections.
pub struct SecureListener {
    accepted: mpsc::Receiver<PeerStream>,
    local_addr: SocketAddr,
    _accept_loop: AbortOnDrop,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl SecureListener {
    /// Wraps a bound listener: TLS when `tls` is given, plaintext otherwise.
    pub fn new(listener: TcpListener, tls: Option<ServerTls>, limits: ListenerLimits) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (tx, accepted) = mpsc::channel(64);
        let acceptor = tls.map(|tls| TlsAcceptor::from(tls.config));
        let task = tokio::spawn(accept_loop(listener, acceptor, limits, tx));
        Ok(SecureListener { accepted, local_addr, _accept_loop: AbortOnDrop(task) })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The connections as a stream, for `tonic`'s `serve_with_incoming`.
    pub fn into_incoming(self) -> impl futures::Stream<Item = io::Result<PeerStream>> + Send + 'static {
        futures::stream::unfold(self, |mut listener| async move {
            let stream = listener.accepted.recv().await?;
            Some((Ok(stream), listener))
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    limits: ListenerLimits,
    tx: mpsc::Sender<PeerStream>,
) {
    let counts: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(guard) = PeerGuard::admit(&counts, addr.ip(), limits.connections_per_peer) else {
            tracing::warn!(peer = %addr, limit = limits.connections_per_peer, "too many connections from one peer; closed");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            let stream = match acceptor {
                None => PeerStream::plain(tcp, addr, guard),
                Some(acceptor) => match handshake(acceptor, tcp, addr, guard, limits.handshake_timeout).await
                {
                    Some(stream) => stream,
                    None => return,
                },
            };
            let _ = tx.send(stream).await;
        });
    }
}

async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    addr: SocketAddr,
    guard: PeerGuard,
    timeout: Duration,
) -> Option<PeerStream> {
    let tls = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(peer = %addr, error = %e, "TLS handshake refused");
            return None;
        }
        Err(_) => {
            tracing::info!(peer = %addr, "TLS handshake timed out");
            return None;
        }
    };
    let identity = match tls.get_ref().1.peer_certificates().and_then(|certs| certs.first()) {
        None => None,
        Some(cert) => match Identity::from_certificate(cert) {
            Ok(identity) => Some(identity),
            Err(e) => {
                tracing::info!(peer = %addr, error = %e, "unusable client certificate");
                return None;
            }
        },
    };
    let info = PeerInfo { addr, identity };
    Some(PeerStream { io: Io::Tls(Box::new(tls)), info, _guard: guard })
}

/// Counts one connection of a peer while it lives.
struct PeerGuard {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl PeerGuard {
    fn admit(counts: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr, limit: usize) -> Option<PeerGuard> {
        let mut map = counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = map.entry(ip).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(PeerGuard { counts: counts.clone(), ip })
    }
}

impl Drop for PeerGuard {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = map.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// An accepted connection and who is on its other end.
pub struct PeerStream {
    io: Io,
    info: PeerInfo,
    _guard: PeerGuard,
}

impl PeerStream {
    fn plain(tcp: TcpStream, addr: SocketAddr, guard: PeerGuard) -> Self {
        PeerStream {
            io: Io::Plain(tcp),
            info: PeerInfo { addr, identity: Some(Identity::Anonymous) },
            _guard: guard,
        }
    }

    /// Who is on the other end.
    pub fn peer(&self) -> &PeerInfo {
        &self.info
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
}

impl tonic::transport::server::Connected for PeerStream {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl axum::serve::Listener for SecureListener {
    type Io = PeerStream;
    type Addr = PeerInfo;

    async fn accept(&mut self) -> (PeerStream, PeerInfo) {
        match self.accepted.recv().await {
            Some(stream) => {
                let info = stream.info.clone();
                (stream, info)
            }
            // The accept loop ended (it never does while the listener lives).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<PeerInfo> {
        Ok(PeerInfo { addr: self.local_addr, identity: None })
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, SecureListener>> for PeerInfo {
    fn connect_info(stream: axum::serve::IncomingStream<'_, SecureListener>) -> Self {
        stream.remote_addr().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_gets_at_most_its_share_of_connections() {
        let counts = Arc::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let first = PeerGuard::admit(&counts, ip, 2).unwrap();
        let _second = PeerGuard::admit(&counts, ip, 2).unwrap();
        assert!(PeerGuard::admit(&counts, ip, 2).is_none(), "a third is refused");
        assert!(PeerGuard::admit(&counts, "127.0.0.2".parse().unwrap(), 2).is_some(), "others are not");
        drop(first);
        assert!(PeerGuard::admit(&counts, ip, 2).is_some(), "a closed connection frees its place");
    }
}
