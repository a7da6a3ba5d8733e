//! A TCP proxy on 127.0.0.1 that a test can cut off and restore: seen from its clients, a
//! server that goes away (connections reset, new ones refused) and comes back with its
//! state intact (an in-memory test server that really stopped would lose it).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The proxy; stopped when dropped.
pub struct Proxy {
    address: SocketAddr,
    open: Arc<AtomicBool>,
    stopped: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Forwards connections to `target` (a loopback address).
    pub fn start(target: SocketAddr) -> Proxy {
        assert!(target.ip().is_loopback(), "test traffic stays on loopback");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let proxy = Proxy {
            address: listener.local_addr().unwrap(),
            open: Arc::new(AtomicBool::new(true)),
            stopped: Arc::new(AtomicBool::new(false)),
            connections: Arc::new(Mutex::new(Vec::new())),
        };
        let (open, stopped, connections) =
            (proxy.open.clone(), proxy.stopped.clone(), proxy.connections.clone());
        std::thread::spawn(move || {
            // Bounded by the proxy's life: it stops when the test drops it.
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) if open.load(Ordering::SeqCst) => {
                        let _ = client.set_nonblocking(false);
                        if let Ok(server) = TcpStream::connect(target) {
                            forward(client, server, &connections);
                        }
                    }
                    // Cut off: the connection is reset at once.
                    Ok((client, _)) => drop(client),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        proxy
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Resets every open connection and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for stream in self.connections.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.cut();
    }
}

/// Copies both ways between `client` and `server` until either side closes.
fn forward(client: TcpStream, server: TcpStream, connections: &Mutex<Vec<TcpStream>>) {
    let mut tracked = connections.lock().unwrap();
    for stream in [&client, &server] {
        if let Ok(clone) = stream.try_clone() {
            tracked.push(clone);
        }
    }
    for (from, to) in [(client.try_clone(), server.try_clone()), (Ok(server), Ok(client))] {
        let (Ok(mut from), Ok(mut to)) = (from, to) else { continue };
        std::thread::spawn(move || {
            let mut buf = [0u8; 64 * 1024];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        });
    }
}
