"""A Gristmill cluster on this machine: a driver and workers on 127.0.0.1, for the
`gristmill-cluster` engine of `bench/run` and for `bench/cluster-overhead` (stdlib only)."""

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

# The user whose client certificate a secured cluster's jobs present (`client_args`).
BENCH_USER = "bench"


def http_json(base: str, path: str, context: ssl.SSLContext | None = None, token: str | None = None):
    """GET `base + path` as JSON; over HTTPS, trusting `context`, with a bearer `token`."""
    request = urllib.request.Request(base + path)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=5, context=context) as r:
        return json.load(r)


def free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return "127.0.0.1:%d" % s.getsockname()[1]


def _tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:]).strip() or "(empty)"
    except OSError:
        return "(no log)"


class Cluster:
    """`gristmill driver` plus `workers` × `gristmill-worker --slots slots`, all on loopback,
    with their data directories under `workdir`. `url` is the driver's gRPC address (for
    `--driver`), `http` its status page; `get(path)` reads a status page as JSON.

    `secured=True`: mutual TLS. Creates a CA, a node certificate for 127.0.0.1 and
    localhost, a client certificate and a bearer token for the user `bench` in
    `workdir/certs` (`gristmill cert ...`), and starts the driver and workers with
    `--certs-dir`; `url` and `http` are then https. Job binaries must be given
    `client_args` (empty for a plaintext cluster). The driver's and workers' stderr
    (RUST_LOG=warn) is kept in `workdir/driver.log` and `workdir/wN.log`. `worker_args`:
    extra `gristmill-worker` flags (e.g. `--no-host-local-shuffle`). `worker_env`: extra
    environment of the workers (and so of their tasks). `worker_http=True`: each worker
    serves `/metrics`, `/healthz` and `/readyz` on a free port (`worker_http`, a list of
    `host:port`). `driver_args`: extra `gristmill driver` flags."""

    def __init__(self, bin_dir, workdir, workers: int = 2, slots: int = 1, secured: bool = False,
                 worker_args=(), worker_env=None, worker_http: bool = False, driver_args=()):
        env = {**os.environ, "RUST_LOG": "warn"}
        workdir = os.path.abspath(workdir)  # workers run their tasks in another directory
        os.makedirs(workdir, exist_ok=True)
        self.workers = []
        self.secured = secured
        self.certs_dir = None
        self.token = None
        self.ssl_context = None
        self.client_args = []
        self.logs = [os.path.join(workdir, "driver.log")]
        security = []
        if secured:
            self.certs_dir = os.path.join(workdir, "certs")
            shutil.rmtree(self.certs_dir, ignore_errors=True)
            cert = [f"{bin_dir}/gristmill", "cert"]
            for args in (["create-ca"], ["create-node", "127.0.0.1", "localhost"], ["create-client", BENCH_USER]):
                run = subprocess.run(cert + args + ["--certs-dir", self.certs_dir], capture_output=True, text=True)
                if run.returncode != 0:
                    raise RuntimeError(f"gristmill cert {' '.join(args)} failed: {run.stderr.strip()}")
            run = subprocess.run(cert + ["create-token", BENCH_USER, "--certs-dir", self.certs_dir],
                                 capture_output=True, text=True)
            if run.returncode != 0 or not run.stdout.strip():
                raise RuntimeError(f"gristmill cert create-token failed: {run.stderr.strip()}")
            self.token = run.stdout.strip().splitlines()[-1]
            self.ssl_context = ssl.create_default_context(cafile=os.path.join(self.certs_dir, "ca.crt"))
            self.client_args = ["--certs-dir", self.certs_dir, "--user", BENCH_USER]
            security = ["--certs-dir", self.certs_dir]
        with open(self.logs[0], "w") as log:
            self.driver = subprocess.Popen(
                [f"{bin_dir}/gristmill", "driver", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                 "--data-dir", f"{workdir}/driver", "--heartbeat-timeout", "5"] + security + list(driver_args),
                stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        line = self.driver.stdout.readline().split()
        if len(line) < 5:
            self.close()
            raise RuntimeError(f"the driver did not start: {_tail(self.logs[0])}")
        self.url = ("https://" if secured else "http://") + line[4]
        self.http = line[-1].removeprefix("(status").rstrip(")").removesuffix("/api/jobs")
        self.addresses = [free_address() for _ in range(workers)]
        self.worker_http = [free_address() for _ in range(workers)] if worker_http else []
        worker_env = {**env, **(worker_env or {})}
        for i in range(workers):
            http = ["--http", self.worker_http[i]] if worker_http else []
            self.logs.append(os.path.join(workdir, f"w{i}.log"))
            with open(self.logs[-1], "w") as log:
                self.workers.append(subprocess.Popen(
                    [f"{bin_dir}/gristmill-worker", "--driver", self.url, "--slots", str(slots),
                     "--data-dir", f"{workdir}/w{i}", "--listen", self.addresses[i]] + security + list(worker_args)
                    + http,
                    stderr=log, env=worker_env))
        error = None
        for _ in range(600):
            dead = [p for p in [self.driver] + self.workers if p.poll() is not None]
            if dead:
                break
            try:
                if sum(w["state"] == "alive" for w in self.get("/api/workers")) == workers:
                    return
            except (OSError, ValueError) as e:  # URLError, a TLS or HTTP error, bad JSON
                error = e
            time.sleep(0.05)
        logs = "\n".join(f"--- {path}:\n{_tail(path)}" for path in self.logs)
        self.close()
        raise RuntimeError(f"the workers did not attach within 30 s (last status page error: {error})\n{logs}")


    def cpu_seconds(self):
        """CPU seconds (user + system) the driver and workers used so far, with their task
        processes that ended (a worker waits for each, so they count in its children's
        times): a cost that other load on the host does not inflate, unlike wall time."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for p in [self.driver] + self.workers:
            with open(f"/proc/{p.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += sum(int(v) for v in fields[11:15])
        return total / tick

    def get(self, path: str):
        """A status page (`/api/jobs`, `/api/workers`, ...) as JSON."""
        return http_json(self.http, path, self.ssl_context, self.token)

    def scrape(self) -> int:
        """Reads `/metrics` of the driver and of every worker with `--http`, as a Prometheus
        server would; the bytes read."""
        scheme = "https://" if self.secured else "http://"
        total = 0
        for base in [self.http] + [scheme + a for a in self.worker_http]:
            request = urllib.request.Request(base + "/metrics")
            if self.token:
                request.add_header("Authorization", f"Bearer {self.token}")
            with urllib.request.urlopen(request, timeout=5, context=self.ssl_context) as r:
                total += len(r.read())
        return total

    def close(self) -> None:
        for p in self.workers + [self.driver]:
            p.kill()
            p.wait()
