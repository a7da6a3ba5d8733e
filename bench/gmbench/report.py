"""The Markdown report: the machine, then one table per workload."""

HEADER = ("| engine | median s | min s | peak RSS MiB | MB/s | × Gristmill | answer | load before each run (1-min) |\n"
          "|---|---:|---:|---:|---:|---:|---|---|")


def markdown(meta: dict, results: list[dict]) -> str:
    m = meta["machine"]
    lines = [
        f"# Gristmill bench, size {meta['size']}, {meta['date']}",
        "",
        f"Machine: {m['cores']} cores, {m['memory_gib']} GiB, {m['cpu']}, Linux {m['kernel']}. "
        f"Every engine on {meta['threads']} threads; {meta['runs']} runs each, engines interleaved. "
        f"Gristmill {revision_of_report(meta, results)}; "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".",
        "",
        f"`/proc/loadavg` at start: `{meta['loadavg_start']}`, at end: `{meta['loadavg_end']}`; "
        f"the whole run took {meta['elapsed_s'] / 60:.1f} min (data generation included)."
        + (f" Resumed: {', '.join(meta['resumed'])} measured by an earlier, interrupted invocation "
           "(see each table's date)." if meta.get("resumed") else "")
        + (f" {meta['note']}" if meta.get("note") else ""),  # added by hand: what the run does not show
        "",
        "Times are wall time of one process per run (startup included); MB/s is the workload's input "
        "bytes / median; × Gristmill is the engine's median / Gristmill's (above 1: Gristmill is faster).",
    ]
    for res in results:
        lines += workload_table(res)
    return "\n".join(lines) + "\n"


def workload_table(res: dict) -> list[str]:
    rows = res["engines"]
    grist = next((r for r in rows if r["engine"] == "gristmill" and "median_s" in r), None)
    out = ["", f"## {res['workload']}", "",
           f"{res['about']}; input {res['input_bytes'] / 1e6:,.0f} MB; {res['runs']} runs, "
           f"measured {res['measured_at'].replace('T', ' ')}{at_revision(res)}.", "", HEADER]
    for r in rows:
        out.append(engine_row(r, res["input_bytes"], grist))
    return out


def revision_of_report(meta: dict, results: list[dict]) -> str:
    """One revision, or a pointer to the tables when a resumed run mixes several."""
    revisions = {res.get("revision") for res in results} - {None}
    return "revision per workload (see each table)" if len(revisions) > 1 else meta["revision"]


def at_revision(res: dict) -> str:
    """The Gristmill revision a workload was measured at (results of a resumed run can differ)."""
    return f" at Gristmill {res['revision']}" if res.get("revision") else ""


def engine_row(r: dict, input_bytes: int, grist: dict | None) -> str:
    if "median_s" not in r:
        reason = r.get("reason", "")
        reason = " ".join(reason) if isinstance(reason, list) else reason
        return f"| {r['engine']} | {r['status']} | | | | | {reason} | |"
    median = r["median_s"]
    ratio = f"{median / grist['median_s']:.2f}" if grist and r is not grist else ("1.00" if grist else "n/a")
    loads = " ".join(run["loadavg"].split()[0] + ("" if run["returncode"] == 0 else " (failed)")
                     for run in r["runs"])
    check = r.get("check", "unchecked")
    if r.get("timed_out"):
        check += f"; {len(r['runs'])} runs, then {r['timed_out']}"
    if r.get("failures"):
        check += f"; {len(r['failures'])} of {len(r['runs'])} runs failed: {' '.join(r['failures'][-1])}"
    return (f"| {r['engine']} | {median:.2f} | {r['min_s']:.2f} | {r['peak_rss'] / 2**20:,.0f} | "
            f"{input_bytes / median / 1e6:,.0f} | {ratio} | {check} | {loads} |")
