#!/usr/bin/env python3
"""The docker-compose deployment, checked without a Docker engine.

    python3 tests/compose.py check      static: compose file, Dockerfile, configs, Prometheus
    python3 tests/compose.py rehearse   native: the compose services run as local processes

`check` reads docker-compose.yml and crates/warden/Dockerfile and asserts that every Warden
service runs a real `warden` subcommand with flags the binary has; every mounted repo file
exists and every mounted config passes `warden check` (with the PKI the `certs` service would
write); every environment variable is one the binary reads; every published or scraped port
is one its config or command listens on; the Dockerfile's Rust version equals the
workspace's `rust-version` and is at least every locked package's; the runtime user owns
every volume path; Prometheus scrapes every Warden service; Grafana's dashboards query only
documented metrics. `docker compose config -q` runs too when a Docker CLI with an engine is
there.

`rehearse` starts the same topology natively from the compose file itself: one Kafka-protocol
broker (Tansu) for `kafka`, then every Warden service in dependency order, with the compose
file's commands, configs and environment (container host names, ports and volume paths
mapped to loopback ports and temporary folders), two processor replicas, and the demo
profile. It asserts that the one-shot services succeed, every service becomes healthy by its
own healthcheck, an mTLS device and an API-key device get through the gateway, the
simulator's flooding device is quarantined and the decision reaches the other gateway's admin
API, both processors own partitions, every Prometheus scrape target serves metrics, and every
service exits cleanly on SIGTERM.

The `warden` binary: $WARDEN_BIN, else $CARGO_TARGET_DIR/debug/warden, else target/debug/warden.
Tansu: $TANSU_BIN (tests/run.sh installs it).
"""
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

try:
    import yaml
except ImportError:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "--user", "--break-system-packages", "pyyaml"])
    import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE.get("services", {})
DOCKERFILE = ROOT / "crates/warden/Dockerfile"


def warden_bin():
    if os.environ.get("WARDEN_BIN"):
        return Path(os.environ["WARDEN_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "debug" / "warden"


WARDEN = warden_bin()


def is_warden(svc):
    return str(svc.get("image", "")).startswith("warden:")


def run(args, **kw):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)


def image_healthcheck():
    """The Dockerfile's HEALTHCHECK command (exec form)."""
    m = re.search(r"HEALTHCHECK[^\n]*(?:\\\n[^\n]*)*?CMD (\[.*?\])", DOCKERFILE.read_text(), re.S)
    return json.loads(m.group(1)) if m else None


def healthcheck(svc):
    """The healthcheck command of a service (its own, else the image's), or None."""
    hc = svc.get("healthcheck")
    if hc is not None:
        if hc.get("disable"):
            return None
        test = hc.get("test")
        if isinstance(test, list) and test and test[0] == "CMD":
            return test[1:]
        return test
    if is_warden(svc):
        return image_healthcheck()
    return None


# ---------------------------------------------------------------------------------------------
# Helpers shared by both modes: where a container path comes from on this machine.


class Mounts:
    """Container path → host path for one service: bind mounts to repo files, named volumes
    to one folder per volume (shared by every service mounting it, as in Docker)."""

    def __init__(self, svc, volume_dirs):
        self.map = {}
        for v in svc.get("volumes", []):
            parts = v.split(":")
            host, container = parts[0], parts[1]
            if host.startswith((".", "/")):
                self.map[container] = (ROOT / host).resolve()
            else:
                self.map[container] = volume_dirs(host)

    def host(self, path):
        for container in sorted(self.map, key=len, reverse=True):
            if path == container or path.startswith(container + "/"):
                return Path(str(self.map[container]) + path[len(container):])
        return None

    def rewrite(self, text):
        """Every container path in `text` under a mount, as the host path."""
        for container in sorted(self.map, key=len, reverse=True):
            text = re.sub(re.escape(container) + r"(?=[/\"'\s,\]]|$)", str(self.map[container]), text)
        return text


def subcommands():
    out = run([WARDEN, "--help"]).stdout
    names = re.findall(r"^  ([a-z][a-z-]*)\s", out, re.M)
    return set(names) - {"help"}


def help_of(sub):
    return run([WARDEN, sub, "--help"]).stdout


def flags_of(sub):
    return set(re.findall(r"(--[a-z][a-z-]*)", help_of(sub))) | {"--help", "--log-format"}


def envs_of(sub):
    return set(re.findall(r"\[env: ([A-Z_]+)=", help_of(sub) + run([WARDEN, "--help"]).stdout))


def default_sections():
    """`section.key` pairs of the built-in defaults (what WARDEN__SECTION__KEY may set)."""
    import tomllib

    defaults = tomllib.loads((ROOT / "crates/warden-config/src/default.toml").read_text())
    keys = set()

    def walk(prefix, table):
        for k, v in table.items():
            if isinstance(v, dict):
                walk(prefix + [k], v)
            else:
                keys.add("__".join(prefix + [k]).upper())

    walk([], defaults)
    return keys


def version_tuple(v):
    return tuple(int(x) for x in v.split("."))


# ---------------------------------------------------------------------------------------------
# check


def check():
    problems = []
    say = problems.append
    if not WARDEN.exists():
        sys.exit(f"{WARDEN} is missing: build it first (cargo build -p warden)")
    subs = subcommands()
    env_keys = default_sections()
    tmp = Path(tempfile.mkdtemp(prefix="warden-compose-check-"))
    volume_dirs = {}

    def vol(name):
        return volume_dirs.setdefault(name, tmp / "volumes" / name)

    declared = set((COMPOSE.get("volumes") or {}).keys())
    networks = set((COMPOSE.get("networks") or {}).keys())

    # The PKI the `certs` service writes, so configs naming its files can be checked.
    for name, svc in SERVICES.items():
        if is_warden(svc) and svc.get("command", [None])[0] == "certs":
            m = Mounts(svc, vol)
            cmd = [m.rewrite(a) for a in svc["command"]]
            r = run([WARDEN, *cmd])
            if r.returncode != 0:
                say(f"{name}: `warden {' '.join(svc['command'])}` failed: {r.stderr.strip()}")

    for name, svc in SERVICES.items():
        for dep in svc.get("depends_on", {}) or {}:
            if dep not in SERVICES:
                say(f"{name}: depends on unknown service {dep}")
        for n in svc.get("networks", []) or []:
            if n not in networks:
                say(f"{name}: network {n} is not declared")
        image = str(svc.get("image", ""))
        if not image:
            say(f"{name}: no image")
        elif not is_warden(svc) and (":" not in image or image.endswith(":latest")):
            say(f"{name}: image {image} has no pinned tag")
        for v in svc.get("volumes", []):
            host = v.split(":")[0]
            if host.startswith((".", "/")):
                if not (ROOT / host).exists():
                    say(f"{name}: mounted {host} does not exist")
            elif host not in declared:
                say(f"{name}: named volume {host} is not declared")
        if not is_warden(svc):
            continue
        if "build" in svc and not (ROOT / svc["build"].get("context", ".") / svc["build"].get("dockerfile", "Dockerfile")).exists():
            say(f"{name}: its Dockerfile does not exist")
        if "restart" not in svc:
            say(f"{name}: no restart policy")
        cmd = [str(c) for c in svc.get("command", [])]
        if not cmd or cmd[0] not in subs:
            say(f"{name}: command {cmd} is not a warden subcommand ({', '.join(sorted(subs))})")
            continue
        flags = flags_of(cmd[0])
        for a in cmd[1:]:
            if a.startswith("--") and a.split("=")[0] not in flags:
                say(f"{name}: `warden {cmd[0]}` has no flag {a}")
        m = Mounts(svc, vol)
        for flag, value in zip(cmd[1:], cmd[2:]):
            if flag in ("--config", "--pipeline"):
                host = m.host(value)
                if host is None or not host.exists():
                    say(f"{name}: {flag} {value} is not a mounted file")
                    continue
                text = m.rewrite(host.read_text())
                copy = tmp / f"{name}-{host.name}"
                copy.write_text(text)
                args = ["check", "--config", copy] if flag == "--config" else ["check", "--pipeline", host]
                r = run([WARDEN, *args], cwd=ROOT)
                if r.returncode != 0:
                    say(f"{name}: `warden check` of {value}: {(r.stdout + r.stderr).strip()}")
        envs = envs_of(cmd[0])
        for key in svc.get("environment", {}) or {}:
            if key == "RUST_LOG" or key in envs:
                continue
            m2 = re.fullmatch(r"WARDEN__([A-Z0-9_]+)", key)
            if not m2 or m2.group(1) not in env_keys:
                say(f"{name}: env {key} is not read by `warden {cmd[0]}`")
        listens = listen_ports(svc, m)
        for p in svc.get("ports", []):
            container = str(p).split(":")[-1].split("/")[0]
            if int(container) not in listens:
                say(f"{name}: published port {container} is not one it listens on ({sorted(listens)})")
        hc = healthcheck(svc)
        if hc and hc[0] == "/usr/local/bin/warden":
            if hc[1] not in subs:
                say(f"{name}: healthcheck runs unknown subcommand {hc[1]}")
            url = next((hc[i + 1] for i, a in enumerate(hc) if a == "--url"), "http://127.0.0.1:9464/readyz")
            port = int(re.search(r":(\d+)/", url).group(1))
            if port not in listens:
                say(f"{name}: healthcheck probes port {port}, which it does not listen on ({sorted(listens)})")
        elif hc is None and svc.get("restart") != "no":
            say(f"{name}: a long-running service without healthcheck")

    check_dockerfile(say)
    check_prometheus(say, vol)
    check_dashboards(say)
    if shutil.which("docker") and run(["docker", "info"]).returncode == 0:
        r = run(["docker", "compose", "config", "-q"], cwd=ROOT)
        if r.returncode != 0:
            say(f"docker compose config: {r.stderr.strip()}")
    else:
        print("compose check: no Docker engine here; `docker compose config -q` skipped")
    shutil.rmtree(tmp, ignore_errors=True)
    for p in problems:
        print("docker-compose:", p)
    if not problems:
        print(f"compose check: {len(SERVICES)} services ok")
    return 1 if problems else 0


def listen_ports(svc, mounts):
    """Ports a Warden service listens on: its config's listen addresses, its --listen flag,
    and the simulated fleet's TLS listener (listen port + 363) of `gateway --scenario`."""
    cmd = [str(c) for c in svc.get("command", [])]
    ports = set()
    for flag, value in zip(cmd[1:], cmd[2:]):
        if flag == "--listen":
            ports.add(int(value.rsplit(":", 1)[1]))
        if flag == "--config":
            host = mounts.host(value)
            if host and host.exists():
                for m in re.finditer(r'^\s*listen\s*=\s*"[^"]*:(\d+)"', host.read_text(), re.M):
                    ports.add(int(m.group(1)))
    if "--scenario" in cmd:
        ports |= {p + 363 for p in list(ports) if p not in (9464, 9400, 9500)}
    return ports


def check_dockerfile(say):
    text = DOCKERFILE.read_text()
    m = re.search(r"^FROM rust:(\d+\.\d+(?:\.\d+)?)", text, re.M)
    if not m:
        say("Dockerfile: no `FROM rust:X.Y` build stage")
        return
    image_rust = version_tuple(m.group(1))
    ws = re.search(r'^rust-version\s*=\s*"([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M)
    if not ws or version_tuple(ws.group(1)) != image_rust[: len(version_tuple(ws.group(1)))]:
        say(f"Dockerfile: rust:{m.group(1)} is not the workspace's rust-version ({ws.group(1) if ws else 'unset'})")
    meta = run(["cargo", "metadata", "--format-version", "1", "--locked"], cwd=ROOT)
    if meta.returncode != 0:
        say(f"cargo metadata: {meta.stderr.strip()}")
    else:
        needed = max(
            ((version_tuple(p["rust_version"]), p["name"]) for p in json.loads(meta.stdout)["packages"] if p.get("rust_version")),
            default=((0,), ""),
        )
        if image_rust < needed[0][: len(image_rust)] or image_rust[:2] < needed[0][:2]:
            say(f"Dockerfile: rust:{m.group(1)} is older than {needed[1]}'s rust-version {'.'.join(map(str, needed[0]))}")
    final = text[text.rfind("\nFROM "):]
    user = re.search(r"^USER (\w+)", final, re.M)
    created = set(re.findall(r"(/var/lib/warden[\w/.-]*)", " ".join(re.findall(r"mkdir -p ([^\n&\\]+)", final))))
    owned = re.findall(r"chown -R (\w+):\w+ (\S+)", final)
    if not user:
        say("Dockerfile: the runtime stage has no USER (runs as root)")
    if "ENTRYPOINT" not in final or "tini" not in final:
        say("Dockerfile: no init (tini) as PID 1")
    if "HEALTHCHECK" not in final:
        say("Dockerfile: no HEALTHCHECK")
    if not (ROOT / ".dockerignore").exists() or "target" not in (ROOT / ".dockerignore").read_text():
        say(".dockerignore is missing or does not exclude target/")
    for name, svc in SERVICES.items():
        if not is_warden(svc):
            continue
        for v in svc.get("volumes", []):
            parts = v.split(":")
            host, container = parts[0], parts[1]
            if host.startswith((".", "/")) or (len(parts) > 2 and "ro" in parts[2].split(",")):
                continue
            if container not in created or not any(
                user and u == user.group(1) and (container == d or container.startswith(d + "/")) for u, d in owned
            ):
                say(f"{name}: volume path {container} is not created and owned by the image's runtime user")


def check_prometheus(say, vol):
    prom = yaml.safe_load((ROOT / "dashboards/prometheus.yml").read_text())
    targets = set()
    for job in prom.get("scrape_configs", []):
        for sc in job.get("static_configs", []):
            targets.update(sc.get("targets", []))
        for sd in job.get("dns_sd_configs", []):
            targets.update(f"{n}:{sd.get('port')}" for n in sd.get("names", []))
    for t in targets:
        host, port = t.rsplit(":", 1)
        svc = SERVICES.get(host)
        if svc is None:
            say(f"dashboards/prometheus.yml: target {t} is not a compose service")
        elif int(port) not in listen_ports(svc, Mounts(svc, vol)):
            say(f"dashboards/prometheus.yml: {host} does not listen on {port}")
    for name, svc in SERVICES.items():
        long_running = svc.get("restart") != "no"
        if is_warden(svc) and long_running and 9464 in listen_ports(svc, Mounts(svc, vol)) and f"{name}:9464" not in targets:
            say(f"{name}: its metrics are not scraped by dashboards/prometheus.yml")


def check_dashboards(say):
    docs = (ROOT / "docs/METRICS.md").read_text() if (ROOT / "docs/METRICS.md").exists() else ""
    for d in sorted((ROOT / "dashboards").glob("*.json")):
        board = json.loads(d.read_text())
        for panel in board.get("panels", []):
            for t in panel.get("targets", []):
                for m in re.findall(r"\b(warden_[a-z0-9_]+)", t.get("expr", "")):
                    base = re.sub(r"_(bucket|sum|count)$", "", m)
                    if f"`{base}`" not in docs and f"`{m}`" not in docs:
                        say(f"{d.name}: {m} is not documented in docs/METRICS.md")


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "check"
    if mode == "check":
        sys.exit(check())
    if mode == "rehearse":
        from compose_rehearsal import rehearse

        sys.exit(rehearse())
    sys.exit(f"usage: {sys.argv[0]} check|rehearse")
