"""Job runs and their outputs for the cluster benches (`bench/cluster-overhead`,
`bench/cluster-terasort`): TeraSort input made once, part files compared byte for byte,
TeraSort outputs validated (stdlib only)."""

import os
import shutil
import subprocess
import time

TERA_RECORDS = 10_000_000  # 1 GB of 100-byte records


def teragen_input(bin_dir, data, records=TERA_RECORDS):
    """`data/tera-1g` (4 part files) and teragen's `records:`/`checksum:` figures, kept in
    `data/tera-1g.teragen` (the input directory itself holds only teragen's files)."""
    name = "tera-1g" if records == TERA_RECORDS else f"tera-{records}"
    tera, facts = os.path.join(data, name), os.path.join(data, f"{name}.teragen")
    if not (os.path.isdir(tera) and os.path.exists(facts)):
        shutil.rmtree(tera, ignore_errors=True)
        os.makedirs(data, exist_ok=True)
        out = subprocess.run([f"{bin_dir}/teragen", "--records", str(records), "--output", tera, "--parts", "4",
                              "--threads", "2"], check=True, capture_output=True, text=True).stdout
        with open(facts, "w") as f:
            f.write(out)
    return tera, parse_facts(open(facts).read())


def parse_facts(out):
    """`key: value` lines (teragen's and teravalidate's stdout) as a dict."""
    return dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)


def run_job(args):
    """Wall time and output (the summary is on stderr) of a job binary; its output is shown
    (and the script stops) if it fails."""
    start = time.monotonic()
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seconds = time.monotonic() - start
    if p.returncode != 0:
        raise SystemExit(f"FAILED (exit {p.returncode}) after {seconds:.2f} s: {' '.join(args)}\n"
                         f"--- stdout:\n{p.stdout.strip()}\n--- stderr:\n{p.stderr.strip()}")
    return seconds, p.stdout + p.stderr


def counter(output, name):
    """A counter of the job's summary (`    shuffle_fetched_bytes    123`), or 0."""
    for line in output.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] == name:
            return int(fields[1])
    return 0


def parts(out):
    """Committed part files of an output directory, by partition number."""
    found = {}
    for name in sorted(os.listdir(out)):
        if name.startswith("part-"):
            partition = int(name.split("-")[1].split(".")[0])
            if partition in found:
                raise SystemExit(f"two files for partition {partition} in {out}: {found[partition]}, {name}")
            found[partition] = os.path.join(out, name)
    if not found:
        raise SystemExit(f"no part files in {out}")
    return found


def same_bytes(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(8 << 20), fb.read(8 << 20)
            if x != y:
                return False
            if not x:
                return True


def compare_outputs(what, reference, other):
    """Every partition's part file equal in bytes between two outputs."""
    p, t = parts(reference), parts(other)
    if sorted(p) != sorted(t):
        raise SystemExit(f"MISMATCH {what}: partitions {sorted(p)} in {reference} vs {sorted(t)} in {other}")
    for partition in p:
        if not same_bytes(p[partition], t[partition]):
            raise SystemExit(f"MISMATCH {what}: {p[partition]} and {t[partition]} differ")


def validate_terasort(bin_dir, out, facts):
    """teravalidate: in order, and the same records and checksum as teragen wrote."""
    p = subprocess.run([f"{bin_dir}/teravalidate", "--input", out, "--threads", "2"], capture_output=True, text=True)
    got = parse_facts(p.stdout)
    if p.returncode != 0 or got.get("order") != "ok" or \
            (got.get("records"), got.get("checksum")) != (facts["records"], facts["checksum"]):
        raise SystemExit(f"MISMATCH terasort output {out}: teravalidate {got} (exit {p.returncode}; "
                         f"{p.stderr.strip()}), teragen {facts}")
