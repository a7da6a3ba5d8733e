//! Separate hosts on one machine, for fault tests across a real network: each host is a
//! network namespace with its own address, plugged by a veth pair into a Linux bridge
//! that lives in a namespace of its own (the switch). Nothing outside these namespaces is
//! touched: no interface, route or rule of the machine's own namespace changes.
//!
//! ```text
//! gmnt<pid>-<seq>-br:  br0 ── vh1 ──veth── eth0 10.P.S.1  (gmnt<pid>-<seq>-h1)
//!                          ── vh2 ──veth── eth0 10.P.S.2  (gmnt<pid>-<seq>-h2) ...
//! ```
//!
//! Faults: [`Hosts::isolate`] takes a host's switch port down (every peer loses it);
//! [`Hosts::partition`] cuts two hosts off from each other only, by pinning each one's
//! neighbour entry for the other to an unused MAC address, so their frames go nowhere and
//! nothing answers, as on a real partition (no packet filter needed: iproute2 alone);
//! [`Hosts::lose`] drops a share of every host's packets (a `tc` BPF filter, since this
//! machine's kernel has no `netem`); [`Hosts::slow_links`] delays (and drops) every frame a
//! host sends in a thread of the test, through a TAP device (see the `latency` module).
//!
//! The hosts share this machine's file system and host id, so cluster processes in them
//! must fetch shuffle data over the network (`GRISTMILL_NO_HOST_LOCAL_SHUFFLE`).
//! Needs root and iproute2; without them [`Hosts::new`] fails, saying so (never skips).

mod cases;
mod chaos;
mod latency;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Every namespace this harness makes starts with this, then the owning test process's id.
const PREFIX: &str = "gmnt";

/// Hosts numbered 1..=n in namespaces of their own, and the switch between them.
pub struct Hosts {
    /// `gmnt<pid>-<seq>`: names of this set's namespaces start with it.
    name: String,
    /// The first three octets of the hosts' /24.
    net: String,
    n: usize,
}

impl Hosts {
    /// Creates `n` hosts on one switch. Removes namespaces that earlier test processes,
    /// now gone, left behind.
    pub fn new(n: usize) -> Hosts {
        require_root_and_iproute2();
        remove_leftovers();
        // Tests run on parallel threads: each set gets its own names and /24. (The sets are
        // isolated from each other anyway; distinct ranges keep logs unambiguous.)
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let (pid, seq) = (std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let hosts =
            Hosts { name: format!("{PREFIX}{pid}-{seq}"), net: format!("10.{}.{}", pid % 256, seq % 256), n };
        ip(&["netns", "add", &hosts.switch()]);
        ip(&["-n", &hosts.switch(), "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hosts.switch(), "link", "set", "br0", "up"]);
        for h in 1..=n {
            hosts.plug(h);
        }
        hosts
    }

    /// Creates host `h`'s namespace and its veth pair into the switch.
    fn plug(&self, h: usize) {
        let (ns, port) = (self.namespace(h), format!("vh{h}"));
        ip(&["netns", "add", &ns]);
        ip(&[
            "-n",
            &self.switch(),
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ns,
        ]);
        ip(&["-n", &self.switch(), "link", "set", &port, "master", "br0", "up"]);
        ip(&["-n", &ns, "addr", "add", &format!("{}/24", self.ip(h)), "dev", "eth0"]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
    }

    /// Host `h`'s address.
    pub fn ip(&self, h: usize) -> String {
        assert!((1..=self.n).contains(&h), "no host {h}");
        format!("{}.{h}", self.net)
    }

    /// Every host's address.
    pub fn ips(&self) -> Vec<String> {
        (1..=self.n).map(|h| self.ip(h)).collect()
    }

    fn namespace(&self, h: usize) -> String {
        format!("{}-h{h}", self.name)
    }

    fn switch(&self) -> String {
        format!("{}-br", self.name)
    }

    /// A command that runs `program` on host `h` (`ip netns exec`, which execs it: the
    /// child's pid is the program's).
    pub fn command(&self, h: usize, program: &Path) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.namespace(h)]).arg(program);
        command
    }

    /// Runs `f` on a short-lived thread inside host `h`'s network namespace: sockets it
    /// opens (a connection, a listener) belong to that host, and stay there.
    #[allow(unsafe_code)]
    pub fn in_host<T: Send + 'static>(
        &self,
        h: usize,
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let path = Path::new("/run/netns").join(self.namespace(h));
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path)?;
            use std::os::fd::AsRawFd;
            // SAFETY: setns with an open namespace file descriptor changes only the calling
            // thread's network namespace; the thread ends with `f`.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            f()
        })
        .join()
        .expect("the thread in the host does not panic")
    }

    /// Writes `/etc/netns/NAME/hosts` for every host: `ip netns exec` mounts it over
    /// `/etc/hosts`, so programs started with [`Hosts::command`] resolve `names` (name,
    /// host number) to the hosts' addresses, as a cluster's DNS would.
    pub fn set_names(&self, names: &[(String, usize)]) {
        let mut text = String::from("127.0.0.1 localhost\n");
        for (name, h) in names {
            text.push_str(&format!("{} {name}\n", self.ip(*h)));
        }
        for h in 1..=self.n {
            let dir = Path::new(ETC_NETNS).join(self.namespace(h));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("hosts"), &text).unwrap();
        }
    }

    /// A TCP connection from host `h` to `addr`.
    pub fn connect(&self, h: usize, addr: SocketAddr, limit: Duration) -> std::io::Result<TcpStream> {
        self.in_host(h, move || TcpStream::connect_timeout(&addr, limit))
    }

    /// Takes host `h`'s switch port down: no host reaches it, nor it any host. Its own
    /// interface stays up, so its sockets see silence, not errors.
    pub fn isolate(&self, h: usize) {
        ip(&["-n", &self.switch(), "link", "set", &format!("vh{h}"), "down"]);
    }

    /// Undoes [`Hosts::isolate`]; returns once the port carries traffic again (the kernel
    /// raises carrier asynchronously, within about a second).
    pub fn reconnect(&self, h: usize) {
        let port = format!("vh{h}");
        ip(&["-n", &self.switch(), "link", "set", &port, "up"]);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let out = Command::new("ip").args(["-n", &self.switch(), "-o", "link", "show", &port]).output();
            if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("state UP")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("port {port} of host {h} is not up 10 s after reconnecting it");
    }

    /// Cuts hosts `a` and `b` off from each other (each keeps every other peer): each one's
    /// neighbour entry for the other is pinned to an unused MAC, which drops their frames
    /// silently, in flight connections included.
    pub fn partition(&self, a: usize, b: usize) {
        for (from, to) in [(a, b), (b, a)] {
            let (ns, peer) = (self.namespace(from), self.ip(to));
            let unused_mac = "02:00:00:00:de:ad";
            ip(&[
                "-n",
                &ns,
                "neigh",
                "replace",
                &peer,
                "lladdr",
                unused_mac,
                "nud",
                "permanent",
                "dev",
                "eth0",
            ]);
        }
    }

    /// Undoes [`Hosts::partition`]: the pinned entries go, ARP finds the real addresses.
    pub fn heal(&self, a: usize, b: usize) {
        for (from, to) in [(a, b), (b, a)] {
            ip(&["-n", &self.namespace(from), "neigh", "del", &self.ip(to), "dev", "eth0"]);
        }
    }

    /// Drops `percent` of every host's outgoing packets at random, without netem (which not
    /// every kernel has): a classic BPF filter draws a random number per packet, and the
    /// packets it picks are redirected to a device that is down, which drops them.
    pub fn lose(&self, percent: f64) {
        let threshold = ((percent / 100.0) * 4_294_967_296.0).min(u32::MAX as f64) as u32;
        // A = random; if A >= threshold return 0 (no match: sent), else return -1 (match).
        let bytecode = format!("4,32 0 0 4294963256,53 1 0 {threshold},6 0 0 4294967295,6 0 0 0");
        for h in 1..=self.n {
            let ns = self.namespace(h);
            ip(&["-n", &ns, "link", "add", "sink0", "type", "veth", "peer", "name", "sink1"]);
            tc(&["-n", &ns, "qdisc", "add", "dev", "eth0", "clsact"]);
            let mirred = ["action", "mirred", "egress", "redirect", "dev", "sink0"];
            tc(&[
                &["-n", &ns, "filter", "add", "dev", "eth0", "egress", "bpf", "bytecode", &bytecode][..],
                &mirred,
            ]
            .concat());
        }
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let mut names: Vec<String> = (1..=self.n).map(|h| self.namespace(h)).collect();
        names.push(self.switch());
        for name in names {
            delete_namespace(&name);
        }
    }
}

/// Kills what still runs in namespace `name` (only processes this harness started there),
/// then deletes it.
fn delete_namespace(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).status();
        }
    }
    let _ = Command::new("ip").args(["netns", "del", name]).stderr(Stdio::null()).status();
    let _ = std::fs::remove_dir_all(Path::new(ETC_NETNS).join(name));
}

/// Where `ip netns exec NAME` finds files to mount over `/etc` (only `NAME/hosts` is ours).
const ETC_NETNS: &str = "/etc/netns";

/// Deletes `gmnt<pid>-…` namespaces whose test process is gone (a killed test run).
fn remove_leftovers() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|rest| rest.split('-').next()) else { continue };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            delete_namespace(&name);
        }
    }
}

/// Runs `ip ARGS`, which must succeed.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs (iproute2)");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
}

/// Runs `tc ARGS`, which must succeed.
fn tc(args: &[&str]) {
    let out = Command::new("tc").args(args).output().expect("tc runs (iproute2)");
    assert!(out.status.success(), "tc {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
}

/// Fails, saying what is missing, unless this process is root and `ip` runs.
fn require_root_and_iproute2() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    let ip = Command::new("ip").arg("-V").output().is_ok_and(|o| o.status.success());
    if root && ip {
        return;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    panic!(
        "the network-namespace tests need root and iproute2 (`ip`, `tc`): root {root}, ip {ip}.{}",
        if ci { " CI must run them as root." } else { " Run them as root (e.g. in the CI container)." }
    );
}
