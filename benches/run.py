#!/usr/bin/env python3
"""One command for the benchmark suite: runs every bench (or those named), then writes a dated
section with the machine's facts and each bench's figures into docs/BENCHMARKS.md, between
the markers `<!-- bench-run:begin -->` and `<!-- bench-run:end -->` (replacing the last run's).

  python3 benches/run.py                     # all: producer processor ml_scoring layers load mqtt device_store
  python3 benches/run.py producer ml_scoring # some
  python3 benches/run.py --dry-run ...       # print the section instead of writing it

Every bench runs in release (`cargo bench -p warden-benches`). `producer` uses Tansu
($TANSU_BIN or $WARDEN_CACHE/tools/bin/tansu) when present; `load` runs benches/gateway_load.sh
(installs nginx and wrk from Debian when missing). Criterion figures are read from its
estimates (target/criterion/*/new/estimates.json); the other benches' summary lines are
quoted as they printed them. The section says which benches ran, when, on what, at which
commit; the raw output of each is kept in target/bench-run/.
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
DOC = ROOT / "docs" / "BENCHMARKS.md"
BEGIN, END = "<!-- bench-run:begin -->", "<!-- bench-run:end -->"

# name → (command, criterion groups it writes, summary-line pattern for non-criterion output)
BENCHES = {
    "producer": (["cargo", "bench", "-p", "warden-benches", "--bench", "producer"], [],
                 r"events/s|x plain|drain|skipped"),
    "processor": (["cargo", "bench", "-p", "warden-benches", "--bench", "processor"], ["processor"],
                  r"best of|steady state|state of window|bytes per identity"),
    "ml_scoring": (["cargo", "bench", "-p", "warden-benches", "--bench", "ml_scoring"], ["ml_scoring"],
                   r"^fleet:|^train "),
    "layers": (["cargo", "bench", "-p", "warden-benches", "--bench", "gateway_layers"],
               ["full_stack", "identity", "layer"], r"writer applied"),
    "load": (["bash", "benches/gateway_load.sh"], [], r"^\||cores; wrk|RSS after|WARNING"),
    "mqtt": (["cargo", "bench", "-p", "warden-benches", "--bench", "mqtt"], [],
             r"msg/s|ratio|connections"),
    "device_store": (["cargo", "bench", "-p", "warden-benches", "--bench", "device_store"], [],
                     r" devices: "),
}


def sh(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in sh(["lscpu"]).splitlines() if l.startswith("Model name")), "?")
    mem = next((l.split()[1] for l in sh(["free", "-g"]).splitlines() if l.startswith("Mem:")), "?")
    return [
        ("date (UTC)", time.strftime("%Y-%m-%d %H:%M", time.gmtime())),
        ("commit", sh(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]) +
         (" (uncommitted changes)" if sh(["git", "-C", str(ROOT), "status", "--porcelain"]) else "")),
        ("CPU", f"{cpu}, {os.cpu_count()} logical cores"),
        ("memory", f"{mem} GiB"),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("rustc", sh(["rustc", "-V"])),
        ("load average at start", " ".join(f"{x:.2f}" for x in os.getloadavg())),
        ("Tansu", sh([tansu(), "--version"]).splitlines()[0] if tansu() else "not found (Kafka variants skipped)"),
    ]


def tansu():
    t = os.environ.get("TANSU_BIN") or str(
        Path(os.environ.get("WARDEN_CACHE", Path.home() / ".cache/warden")) / "tools/bin/tansu")
    return t if Path(t).exists() else None


def criterion_rows(groups, since):
    rows = []
    base = TARGET / "criterion"
    for g in groups:
        for est in sorted((base / g).glob("**/new/estimates.json")):
            if est.stat().st_mtime < since:
                continue  # from an earlier run
            bench = json.loads((est.parent / "benchmark.json").read_text())
            mean = json.loads(est.read_text())["mean"]["point_estimate"]  # ns per iteration
            tp = bench.get("throughput") or {}
            per_s = ""
            if "Elements" in tp:
                per_s = f"{tp['Elements'] / (mean / 1e9):,.0f} elements/s"
            elif "Bytes" in tp:
                per_s = f"{tp['Bytes'] / (mean / 1e9) / 2**20:,.1f} MiB/s"
            rows.append((bench.get("full_id", est.parent.parent.name), fmt_ns(mean), per_s))
    return rows


def fmt_ns(ns):
    for unit, div in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= div:
            return f"{ns / div:.3g} {unit}"
    return f"{ns:.3g} ns"


def run(name, out_dir):
    cmd, groups, pattern = BENCHES[name]
    env = dict(os.environ)
    if tansu():
        env["TANSU_BIN"] = tansu()
    print(f"== {name}: {' '.join(cmd)}", flush=True)
    t0 = time.time()
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    secs = time.time() - t0
    text = p.stdout + p.stderr
    (out_dir / f"{name}.log").write_text(text)
    lines = [l.rstrip() for l in text.splitlines() if re.search(pattern, l)]
    crit = criterion_rows(groups, t0)
    status = "ok" if p.returncode == 0 else f"FAILED (exit {p.returncode}; log target/bench-run/{name}.log)"
    print(f"   {status} in {secs:.0f} s", flush=True)
    return {"name": name, "cmd": " ".join(cmd), "secs": secs, "status": status, "lines": lines, "criterion": crit}


def section(facts, results):
    out = [BEGIN, "", f"## Latest full run ({facts[0][1]} UTC, `python3 benches/run.py`)", "",
           "Written by `benches/run.py`; the sections after this one explain each bench's method and",
           "compare figures over time. Ratios against the reference (plain librdkafka producer, nginx,",
           "direct backend) come from the same run.", "",
           "| machine | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in facts]
    for r in results:
        out += ["", f"### {r['name']} — `{r['cmd']}` ({r['status']}, {r['secs']:.0f} s)", ""]
        if r["criterion"]:
            out += ["| benchmark | mean time per iteration | throughput |", "|---|---:|---:|"]
            out += [f"| {a} | {b} | {c} |" for a, b, c in r["criterion"]]
            out.append("")
        table = [l for l in r["lines"] if l.startswith("|")]
        other = [l for l in r["lines"] if not l.startswith("|")]
        if table:
            out += table + [""]
        if other:
            out += ["```"] + other + ["```"]
    out += ["", END]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("benches", nargs="*", help=f"any of: {' '.join(BENCHES)} (default: all)")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    names = args.benches or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        ap.error(f"unknown bench {unknown}: choose from {' '.join(BENCHES)}")
    facts = machine()
    out_dir = TARGET / "bench-run"
    out_dir.mkdir(parents=True, exist_ok=True)
    print("== building the benches (release)", flush=True)
    build = subprocess.run(["cargo", "bench", "-p", "warden-benches", "--no-run", "--locked"], cwd=ROOT)
    if build.returncode != 0:
        return build.returncode
    results = [run(n, out_dir) for n in names]
    text = section(facts, results)
    if args.dry_run:
        print(text)
    else:
        doc = DOC.read_text()
        if BEGIN in doc and END in doc:
            doc = doc[:doc.index(BEGIN)] + text + doc[doc.index(END) + len(END):]
        else:
            head, _, rest = doc.partition("\n## ")
            doc = f"{head}\n{text}\n\n## {rest}" if rest else f"{doc}\n{text}\n"
        DOC.write_text(doc)
        print(f"== wrote the run into {DOC.relative_to(ROOT)}")
    return 0 if all(r["status"] == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
