//! Latency (and loss) on every link without `netem` or `fq` (this machine's kernel has
//! neither): each host's traffic passes through a TAP device whose frames a thread of the
//! test holds back for the delay (and drops a share of), then sends on.
//!
//! ```text
//! host h:  app0 10.P.S.h ──veth── app1 ─(tc redirect)→ gmtap ⇢ test thread: delay, loss
//!          gmtap ─(tc redirect)→ eth0 ──veth── switch          (each frame the host sends)
//!          eth0 ─(tc redirect)→ app1 ──veth── app0             (each frame it receives)
//! ```
//!
//! Each frame a host sends is delayed once, as `netem delay` on every host's interface would.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{Hosts, ip, tc};

/// A classic BPF program that matches every packet.
const MATCH_ALL: &str = "1,6 0 0 4294967295";
/// The TAP device's name in each host.
const TAP: &str = "gmtap";

/// The delaying threads; they stop when this is dropped.
pub struct SlowLinks {
    stop: Arc<AtomicBool>,
}

impl Drop for SlowLinks {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Hosts {
    /// Delays every frame each host sends by `delay` and drops `loss_percent` of them.
    /// Call before anything runs on the hosts: their addresses move to a new interface.
    pub fn slow_links(&self, delay: Duration, loss_percent: f64) -> SlowLinks {
        let stop = Arc::new(AtomicBool::new(false));
        for h in 1..=self.n {
            let ns = self.namespace(h);
            let address = format!("{}/24", self.ip(h));
            ip(&["-n", &ns, "addr", "del", &address, "dev", "eth0"]);
            ip(&["-n", &ns, "link", "add", "app0", "type", "veth", "peer", "name", "app1"]);
            ip(&["-n", &ns, "addr", "add", &address, "dev", "app0"]);
            let tap = self.in_host(h, open_tap).expect("a TAP device in the host");
            for dev in ["app0", "app1", TAP] {
                ip(&["-n", &ns, "link", "set", dev, "up"]);
            }
            for (from, to) in [("app1", TAP), (TAP, "eth0"), ("eth0", "app1")] {
                redirect(&ns, from, to);
            }
            let seed = 0x9E37_79B9_7F4A_7C15u64 ^ h as u64;
            spawn_delayer(tap, delay, loss_percent, seed, stop.clone());
        }
        SlowLinks { stop }
    }
}

/// Every frame arriving on `from` leaves through `to`.
fn redirect(ns: &str, from: &str, to: &str) {
    tc(&["-n", ns, "qdisc", "add", "dev", from, "clsact"]);
    tc(&[
        "-n", ns, "filter", "add", "dev", from, "ingress", "bpf", "bytecode", MATCH_ALL, "action", "mirred",
        "egress", "redirect", "dev", to,
    ]);
}

/// Opens a TAP device named [`TAP`] in the calling thread's network namespace.
#[allow(unsafe_code)]
fn open_tap() -> std::io::Result<OwnedFd> {
    let file = std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun")?;
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        flags: libc::c_short,
        pad: [u8; 22],
    }
    let mut request =
        IfReq { name: [0; 16], flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short, pad: [0; 22] };
    request.name[..TAP.len()].copy_from_slice(TAP.as_bytes());
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    // SAFETY: TUNSETIFF reads an `ifreq` (name, then flags) from a valid, live pointer.
    if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut request as *mut IfReq) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file.into())
}

/// Reads the frames a host sends from its TAP device and writes them back `delay` later
/// (they then leave through its link), dropping `loss_percent` of them.
fn spawn_delayer(tap: OwnedFd, delay: Duration, loss_percent: f64, seed: u64, stop: Arc<AtomicBool>) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = std::fs::File::from(tap.try_clone().expect("the TAP fd clones"));
    let reader = std::fs::File::from(tap);
    let drop_below = (loss_percent / 100.0 * u64::MAX as f64) as u64;
    let stop_reading = stop.clone();
    std::thread::spawn(move || {
        let mut rng = seed;
        let mut buf = vec![0u8; 65536];
        while !stop_reading.load(Ordering::SeqCst) {
            if !readable(&reader, 100) {
                continue;
            }
            let Ok(n) = std::io::Read::read(&mut &reader, &mut buf) else { break };
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            if rng >= drop_below && tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        // A constant delay keeps the frames in order: each waits for its own due time.
        while let Ok((due, frame)) = rx.recv() {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let _ = std::io::Write::write(&mut &writer, &frame);
        }
    });
}

/// Whether `file` has data within `timeout_ms`.
#[allow(unsafe_code)]
fn readable(file: &std::fs::File, timeout_ms: i32) -> bool {
    let mut poll = libc::pollfd { fd: file.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut poll, 1, timeout_ms) > 0 }
}
