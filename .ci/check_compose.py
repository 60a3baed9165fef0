#!/usr/bin/env python3
"""Static check of docker-compose.yml (no Docker engine here): every warden service runs a real
subcommand with flags the binary has, mounts files that exist in the repo, sets only env vars the
binary reads, and publishes the ports its config listens on."""
import re
import subprocess
import sys
from pathlib import Path

try:
    import yaml
except ImportError:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "pyyaml"])
    import yaml

root = Path(__file__).resolve().parent.parent
compose = yaml.safe_load((root / "docker-compose.yml").read_text())
problems = []
services = compose.get("services", {})
subcommands = {"gateway": {"--config", "--brokers"}, "processor": {"--config", "--brokers", "--pipeline", "--no-dashboard"}, "up": {"--config", "--pipeline", "--demo"}}
defaults = (root / "crates/warden-config/src/default.toml").read_text()
sections = set(re.findall(r"^\[([a-z_.]+)\]", defaults, re.M))

for name, svc in services.items():
    image = svc.get("image", "")
    if not image and "build" not in svc:
        problems.append(f"{name}: no image or build")
    if image and not image.startswith("warden:") and ":" not in image:
        problems.append(f"{name}: image {image} has no pinned tag")
    if "build" in svc:
        df = root / svc["build"].get("dockerfile", "Dockerfile")
        if not df.exists():
            problems.append(f"{name}: dockerfile {df} missing")
    if not image.startswith("warden:"):
        # Other services: their bind-mounted repo files exist.
        for v in svc.get("volumes", []):
            host = v.split(":")[0]
            if host.startswith((".", "/")) and not (root / host).exists():
                problems.append(f"{name}: mounted {host} does not exist")
        continue
    cmd = svc.get("command", [])
    if not cmd or cmd[0] not in subcommands:
        problems.append(f"{name}: command {cmd} is not a warden subcommand")
        continue
    mounts = {}
    for v in svc.get("volumes", []):
        host, container = v.split(":")[0:2]
        if not host.startswith((".", "/")):
            if host not in (compose.get("volumes") or {}):
                problems.append(f"{name}: named volume {host} is not declared")
            continue
        if not (root / host).exists():
            problems.append(f"{name}: mounted {host} does not exist")
        mounts[container] = root / host
    for flag, value in zip(cmd[1:], cmd[2:]):
        if flag.startswith("--"):
            if flag not in subcommands[cmd[0]]:
                problems.append(f"{name}: {cmd[0]} has no flag {flag}")
            if flag in ("--config", "--pipeline"):
                hit = [mounts[c] / Path(value).relative_to(c) if value != c else mounts[c] for c in mounts if value == c or value.startswith(c + "/")]
                if not hit or not hit[0].exists():
                    problems.append(f"{name}: {value} is not a mounted repo file")
    for key in svc.get("environment", {}):
        if key in ("RUST_LOG", "WARDEN_BROKERS"):
            continue
        m = re.fullmatch(r"WARDEN__([A-Z_]+)__([A-Z_]+)", key)
        if not m or m.group(1).lower() not in sections:
            problems.append(f"{name}: env {key} is not read by warden")
    for p in svc.get("ports", []):
        host, container = str(p).split(":")[-2:]
        cfgs = [m for c, m in mounts.items() if c.endswith(".toml")]
        text = "".join(c.read_text() for c in cfgs if c.exists())
        if f":{container}\"" not in text:
            problems.append(f"{name}: port {container} is not a listen address in its config")

# Prometheus scrapes every warden service on its metrics port; Grafana's provisioned
# dashboards are valid JSON and query only warden metrics the docs list.
prom = yaml.safe_load((root / "dashboards/prometheus.yml").read_text())
targets = set()
for job in prom.get("scrape_configs", []):
    for sc in job.get("static_configs", []):
        targets.update(sc.get("targets", []))
    for sd in job.get("dns_sd_configs", []):
        targets.update(f"{n}:{sd.get('port')}" for n in sd.get("names", []))
for name, svc in services.items():
    if svc.get("image", "").startswith("warden:") and f"{name}:9464" not in targets:
        problems.append(f"{name}: not scraped by dashboards/prometheus.yml")
import json
docs = (root / "docs/METRICS.md").read_text() if (root / "docs/METRICS.md").exists() else ""
for d in sorted((root / "dashboards").glob("*.json")):
    board = json.loads(d.read_text())
    for panel in board.get("panels", []):
        for t in panel.get("targets", []):
            for m in re.findall(r"\b(warden_[a-z0-9_]+)", t.get("expr", "")):
                base = re.sub(r"_(bucket|sum|count)$", "", m)
                if f"`{base}`" not in docs and f"`{m}`" not in docs:
                    problems.append(f"{d.name}: {m} is not documented in docs/METRICS.md")

for p in problems:
    print("docker-compose.yml:", p)
sys.exit(1 if problems else 0)
