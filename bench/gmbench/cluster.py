"""A Gristmill cluster on this machine: a driver and workers on 127.0.0.1, for the
`gristmill-cluster` engine of `bench/run` and for `bench/cluster-overhead` (stdlib only)."""

import json
import os
import socket
import subprocess
import time
import urllib.request


def http_json(base: str, path: str):
    with urllib.request.urlopen(base + path, timeout=5) as r:
        return json.load(r)


def free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return "127.0.0.1:%d" % s.getsockname()[1]


class Cluster:
    """`gristmill driver` plus `workers` × `gristmill-worker --slots slots`, all on loopback,
    with their data directories under `workdir`. `url` is the driver's gRPC address (for
    `--driver`), `http` its status page."""

    def __init__(self, bin_dir, workdir, workers: int = 2, slots: int = 1):
        env = {**os.environ, "RUST_LOG": "warn"}
        self.driver = subprocess.Popen(
            [f"{bin_dir}/gristmill", "driver", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
             "--data-dir", f"{workdir}/driver", "--heartbeat-timeout", "5"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        line = self.driver.stdout.readline().split()
        if len(line) < 5:
            self.close()
            raise RuntimeError("the driver did not start (run it by hand to see why)")
        self.url = "http://" + line[4]
        self.http = line[-1].removeprefix("(status").rstrip(")").removesuffix("/api/jobs")
        self.addresses = [free_address() for _ in range(workers)]
        self.workers = [subprocess.Popen(
            [f"{bin_dir}/gristmill-worker", "--driver", self.url, "--slots", str(slots),
             "--data-dir", f"{workdir}/w{i}", "--listen", self.addresses[i]],
            stderr=subprocess.DEVNULL, env=env) for i in range(workers)]
        for _ in range(600):
            if sum(w["state"] == "alive" for w in http_json(self.http, "/api/workers")) == workers:
                return
            time.sleep(0.05)
        self.close()
        raise RuntimeError("the workers did not attach within 30 s")

    def close(self) -> None:
        for p in getattr(self, "workers", []) + [self.driver]:
            p.kill()
            p.wait()
