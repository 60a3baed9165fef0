"""`python3 tests/compose.py rehearse`: the docker-compose topology run natively (see compose.py).

Each compose service becomes local processes running its own command, config and environment
from docker-compose.yml; what only exists inside Docker is mapped: `kafka` is a Tansu broker,
every container port a free loopback port, every named volume a folder (shared by the services
mounting it), every bind mount its repo file, the image's working directory a folder of its own.
"""
import json
import os
import re
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

from compose import COMPOSE, ROOT, SERVICES, WARDEN, Mounts, healthcheck, is_warden, listen_ports

PROCESSOR_REPLICAS = 2
PROFILES = {"demo"}
OPERATOR_TOKEN = "demo-operator-token"
DEMO_KEY = "demo-device-key-0001"
STOP_GRACE_S = 30


def free_port(also=0):
    """A free loopback port (and `port + also` free too, for the simulated TLS listener)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not also:
            return port
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + also))
            return port
        except OSError:
            continue


def fail(msg, instances=()):
    print(f"REHEARSAL FAILED: {msg}", file=sys.stderr)
    for inst in instances:
        inst.show_log()
    raise SystemExit(1)


class Instance:
    """One replica of a compose service, run as a local process."""

    def __init__(self, name, replica, svc, tmp):
        self.name, self.replica, self.svc, self.tmp = name, replica, svc, tmp
        self.id = f"{name}-{replica}"
        self.ports = {}
        self.proc = None
        self.log = tmp / "logs" / f"{self.id}.log"
        self.work = tmp / "work" / self.id
        self.work.mkdir(parents=True, exist_ok=True)
        self.mounts = Mounts(svc, lambda v: (tmp / "volumes" / v))
        for d in set(self.mounts.map.values()):
            if str(d).startswith(str(tmp)):
                d.mkdir(parents=True, exist_ok=True)

    @property
    def one_shot(self):
        return self.svc.get("restart") == "no"

    def allocate(self):
        cmd = [str(c) for c in self.svc.get("command", [])]
        ports = listen_ports(self.svc, self.mounts)
        if "--scenario" in cmd:
            base = [p for p in ports if p not in (9464, 9400, 9500) and p - 363 not in ports]
            for p in base:
                self.ports[p] = free_port(also=363)
                self.ports[p + 363] = self.ports[p] + 363
        for p in ports:
            self.ports.setdefault(p, free_port())

    def rewrite(self, text, addresses):
        text = self.mounts.rewrite(text)
        for p, host in self.ports.items():
            text = re.sub(rf"(0\.0\.0\.0|127\.0\.0\.1):{p}\b", f"127.0.0.1:{host}", text)
        for ref, addr in addresses.items():
            text = re.sub(rf"(?<![\w.-]){re.escape(ref)}\b", addr, text)
        return text

    def command(self, addresses):
        cmd = [str(c) for c in self.svc["command"]]
        out = []
        for i, a in enumerate(cmd):
            if i > 0 and cmd[i - 1] == "--config":
                host = self.mounts.host(a)
                copy = self.tmp / "configs" / f"{self.id}.toml"
                copy.parent.mkdir(exist_ok=True)
                copy.write_text(self.rewrite(host.read_text(), addresses))
                out.append(str(copy))
            else:
                out.append(self.rewrite(a, addresses))
        return out

    def start(self, addresses):
        cmd = self.command(addresses)
        env = dict(os.environ)
        env.update({k: str(v) for k, v in (self.svc.get("environment") or {}).items()})
        env["WARDEN_LOG_FORMAT"] = "text"
        self.log.parent.mkdir(exist_ok=True)
        print(f"  start {self.id}: warden {' '.join(cmd)}")
        self.proc = subprocess.Popen(
            [str(WARDEN), *cmd], cwd=self.work, env=env, stdin=subprocess.DEVNULL,
            stdout=open(self.log, "w"), stderr=subprocess.STDOUT,
        )

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def healthy(self, addresses):
        hc = healthcheck(self.svc)
        if hc is None:
            return self.proc.poll() is None
        if hc[0] != "/usr/local/bin/warden":
            fail(f"{self.id}: healthcheck {hc} is not a warden command (cannot rehearse)")
        args = [self.rewrite(a, addresses) for a in hc[1:]]
        return subprocess.run([str(WARDEN), *args], capture_output=True).returncode == 0

    def url(self, port, path, scheme="http"):
        return f"{scheme}://127.0.0.1:{self.ports[port]}{path}"

    def show_log(self, lines=60):
        if self.log.exists():
            tail = self.log.read_text(errors="replace").splitlines()[-lines:]
            print(f"--- {self.id} log (last {len(tail)} lines) ---\n" + "\n".join(tail), file=sys.stderr)


def order():
    """Services in dependency order (the demo profile included)."""
    wanted = {n: s for n, s in SERVICES.items() if not set(s.get("profiles", [])) - PROFILES}
    done, out = set(), []
    while len(out) < len(wanted):
        progress = False
        for n, s in wanted.items():
            if n not in done and all(d in done for d in (s.get("depends_on") or {})):
                out.append(n)
                done.add(n)
                progress = True
        if not progress:
            fail(f"dependency cycle among {set(wanted) - done}")
    return out


def start_tansu(tmp):
    tansu = os.environ.get("TANSU_BIN") or str(Path(os.environ.get("WARDEN_CACHE", Path.home() / ".cache/warden")) / "tools/bin/tansu")
    if not Path(tansu).exists():
        fail(f"Tansu not found at {tansu}: set TANSU_BIN (tests/run.sh installs it)")
    port = free_port()
    d = tmp / "tansu"
    d.mkdir()
    listener = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [tansu, "broker", "--cluster-id", "warden-compose", "--listener-url", listener,
         "--advertised-listener-url", listener, "--storage-engine", "sqlite://tansu.db"],
        cwd=d, env={**os.environ, "NO_COLOR": "1"}, stdin=subprocess.DEVNULL,
        stdout=open(d / "stdout.log", "w"), stderr=open(d / "stderr.log", "w"),
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    fail("Tansu did not open its port within 30 s")


def https_context(pki, cert=None):
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if cert:
        ctx.load_cert_chain(str(pki / f"{cert}.pem"), str(pki / f"{cert}.key"))
    return ctx


def request(url, method="GET", headers=None, body=None, ctx=None, timeout=10):
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=body)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def metric(text, name):
    """Sum of every sample of `name` (any labels)."""
    total, found = 0.0, False
    for m in re.finditer(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? ([0-9.eE+-]+)$", text, re.M):
        total += float(m.group(1))
        found = True
    return total if found else None


def rehearse():
    if not WARDEN.exists():
        fail(f"{WARDEN} is missing: build it first")
    tmp = Path(tempfile.mkdtemp(prefix="warden-compose-rehearsal-"))
    print(f"compose rehearsal in {tmp}")
    tansu, kafka_port = start_tansu(tmp)
    addresses = {"kafka:9092": f"127.0.0.1:{kafka_port}"}
    instances, by_service = [], {}
    t0 = time.time()
    try:
        for name in order():
            svc = SERVICES[name]
            if not is_warden(svc):
                continue
            replicas = PROCESSOR_REPLICAS if name == "processor" else 1
            for r in range(1, replicas + 1):
                inst = Instance(name, r, svc, tmp)
                inst.allocate()
                by_service.setdefault(name, []).append(inst)
                instances.append(inst)
            # Other services reach this one by `service:port` (the first replica).
            for p, host in by_service[name][0].ports.items():
                addresses[f"{name}:{p}"] = f"127.0.0.1:{host}"
        for name in order():
            svc = SERVICES[name]
            if not is_warden(svc):
                continue
            for dep, cond in (svc.get("depends_on") or {}).items():
                condition = cond.get("condition", "service_started") if isinstance(cond, dict) else "service_started"
                for d in by_service.get(dep, []):
                    if condition == "service_completed_successfully":
                        code = d.wait_exit(180)
                        if code != 0:
                            fail(f"{d.id} (one-shot, needed by {name}) ended with {code}", [d])
                    elif condition == "service_healthy":
                        deadline = time.time() + 180
                        while not d.healthy(addresses):
                            if d.proc.poll() is not None:
                                fail(f"{d.id} exited with {d.proc.returncode} before it was healthy", [d])
                            if time.time() > deadline:
                                fail(f"{d.id} not healthy within 180 s (needed by {name})", [d])
                            time.sleep(1)
                        print(f"  {d.id} healthy after {time.time() - t0:.0f} s")
            for inst in by_service[name]:
                inst.start(addresses)
        check_running(instances, by_service, addresses, tmp)
        print(f"compose rehearsal passed in {time.time() - t0:.0f} s")
        return 0
    finally:
        for inst in instances:
            if inst.proc and inst.proc.poll() is None:
                inst.proc.kill()
        tansu.kill()
        tansu.wait()


def check_running(instances, by_service, addresses, tmp):
    pki = tmp / "volumes" / "pki"
    long_running = [i for i in instances if not i.one_shot]
    for inst in long_running:
        deadline = time.time() + 180
        while not inst.healthy(addresses):
            if inst.proc.poll() is not None or time.time() > deadline:
                fail(f"{inst.id} is not healthy (exit {inst.proc.poll()})", [inst])
            time.sleep(1)
    print("  every service healthy")
    gw = by_service["gateway"][0]

    # Devices through the gateway: an API key over HTTP, a client certificate over HTTPS.
    status, body = request(gw.url(8080, "/api/devices/sensor-0001/telemetry"), "POST", {"X-Api-Key": DEMO_KEY, "Content-Type": "application/json"}, b'{"t":21.5}')
    if status != 200:
        fail(f"API-key device through the gateway: {status} {body}", [gw])
    status, _ = request(gw.url(8080, "/api/devices/sensor-0001/telemetry"), "POST", {}, b"{}")
    if status != 401:
        fail(f"a request without credentials got {status}, not 401", [gw])
    status, body = request(gw.url(8443, "/api/devices/camera-0001/telemetry", "https"), "POST", {"Content-Type": "application/json"}, b'{"t":1}', ctx=https_context(pki, "devices/camera-0001"))
    if status != 200:
        fail(f"mTLS device through the gateway: {status} {body}", [gw])
    print("  API-key and mTLS devices get through the gateway")

    # The admin API takes operator certificates only (not device ones).
    ops = https_context(pki, "operators/ops")
    status, _ = request(gw.url(9500, "/admin/quarantines", "https"), ctx=ops)
    if status != 200:
        fail(f"admin API with the operator certificate: {status}", [gw])
    try:
        status, _ = request(gw.url(9500, "/admin/quarantines", "https"), ctx=https_context(pki, "devices/camera-0001"))
        if status == 200:
            fail("admin API accepted a device certificate", [gw])
    except (urllib.error.URLError, ssl.SSLError, ConnectionError):
        pass

    # The demo: the simulator plays its scenario; the flooding device is quarantined.
    sim = by_service["simulator"][0]
    code = sim.wait_exit(600)
    if code != 0:
        fail(f"simulator ended with {code}", [sim, *by_service["processor"]])
    labels_path = next(iter((tmp / "volumes" / "sim-data").glob("*.labels.json")), None)
    if labels_path is None:
        fail("the simulator wrote no labels", [sim])
    labels = json.loads(labels_path.read_text())
    attackers = [a for attack in labels["attacks"] for a in attack["attackers"] if attack["expect"].get("quarantined")]
    if not attackers:
        fail("the scenario has no attacker expected to be quarantined")
    status, body = request(gw.url(9500, "/admin/quarantines", "https"), ctx=ops)
    listed = json.dumps(json.loads(body))
    for a in attackers:
        subjects = [s.get("value") for s in a["subjects"]]
        if a["refused"] == 0:
            fail(f"attacker {subjects}: none of its {a['sent']} requests was refused by the demo gateway", [*by_service["processor"], by_service["demo-gateway"][0]])
        if not any(f'"{v}"' in listed for v in subjects):
            fail(f"attacker {subjects} is not in the gateway's quarantines (decisions do not reach every gateway): {listed[:500]}", [gw])
        print(f"  attacker {subjects}: {a['refused']} of {a['sent']} requests refused (quarantine), listed by the other gateway's admin API")

    # The console, behind its login, shows the quarantine too.
    proc1 = by_service["processor"][0]
    status, _ = request(proc1.url(9400, "/api/quarantine"))
    if status != 401:
        fail(f"console API without a session: {status}, not 401", [proc1])
    status, body = request(proc1.url(9400, "/api/quarantine"), headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    if status != 200 or not any(f'"{s.get("value")}"' in body for a in attackers for s in a["subjects"]):
        fail(f"console quarantine list: {status} {body[:300]}", [proc1])

    # Both processors own partitions of the one consumer group, together all of them.
    owned = []
    for p in by_service["processor"]:
        _, text = request(p.url(9464, "/metrics"))
        owned.append(metric(text, "warden_processor_assigned_partitions") or 0)
    partitions = int(re.search(r"^partitions\s*=\s*(\d+)", (ROOT / "docs/examples/warden.kafka.toml").read_text(), re.M).group(1))
    if min(owned) <= 0 or sum(owned) != partitions:
        fail(f"partitions owned by the processors: {owned} (want every one > 0, {partitions} in all)", by_service["processor"])
    print(f"  processors own {owned} of {partitions} partitions")

    # Every Prometheus scrape target serves Warden metrics.
    import yaml

    prom = yaml.safe_load((ROOT / "dashboards/prometheus.yml").read_text())
    scraped = 0
    for job in prom["scrape_configs"]:
        names = [t for sc in job.get("static_configs", []) for t in sc.get("targets", [])]
        names += [f"{n}:{sd['port']}" for sd in job.get("dns_sd_configs", []) for n in sd["names"]]
        for target in names:
            host, port = target.rsplit(":", 1)
            for inst in by_service.get(host, []):
                status, text = request(inst.url(int(port), job.get("metrics_path", "/metrics")))
                if status != 200 or "warden_build_info" not in text:
                    fail(f"scrape target {target} ({inst.id}): {status}", [inst])
                scraped += 1
    print(f"  {scraped} scrape targets serve metrics")

    # SIGTERM: every service drains and exits 0 within the compose stop grace period.
    for inst in long_running:
        inst.proc.send_signal(signal.SIGTERM)
    for inst in long_running:
        code = inst.wait_exit(STOP_GRACE_S)
        if code != 0:
            fail(f"{inst.id} after SIGTERM: exit {code} (None: still running after {STOP_GRACE_S} s)", [inst])
    print(f"  {len(long_running)} services exited 0 on SIGTERM")
