"""A native Warden deployment for soak and chaos runs (tests/chaos.py): a Tansu broker, the
topics step, the demo backend, one gateway and one processor, each a real `warden` process
with its own config, plus a paced load generator over keep-alive HTTP connections that
records every response (status, latency and the `x-request-id` the gateway returned).
"""
import hashlib
import heapq
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from compose import ROOT, WARDEN

TENANTS = ["acme", "globex", "initech"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid):
    """Resident set size of a process, in KiB (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Proc:
    """One long-running process whose log is appended to across restarts."""

    def __init__(self, name, argv, tmp, cwd=None):
        self.name, self.argv, self.cwd = name, argv, cwd or tmp
        self.log = tmp / "logs" / f"{name}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.proc = None

    def start(self):
        with open(self.log, "a") as f:
            f.write(f"==== start {time.strftime('%H:%M:%S')}: {' '.join(map(str, self.argv))}\n")
        env = {**os.environ, "NO_COLOR": "1", "WARDEN_LOG_FORMAT": "text"}
        self.proc = subprocess.Popen(
            [str(a) for a in self.argv], cwd=self.cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=open(self.log, "a"), stderr=subprocess.STDOUT,
        )

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def send(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Send `sig` and wait; returns the exit code (None: killed after `timeout`)."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def tail(self, lines=40):
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def wait_until(what, probe, timeout=60, step=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if probe():
                return
        except OSError:
            pass
        time.sleep(step)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def http_get(port, path, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        c.close()


def metric(text, name):
    """Sum of every sample of `name` in a Prometheus exposition."""
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None


class Fleet:
    """API-key devices of two types in three tenants, and their configs' `[[api_keys]]`."""

    def __init__(self, prefix, n, seed=1):
        rng = random.Random(seed)
        self.devices = []
        for i in range(n):
            kind = "temperature_sensor" if i % 3 else "camera"
            ident = f"{prefix}-{i:04d}"
            key = f"{prefix}-key-{i:04d}-{rng.getrandbits(64):016x}"
            self.devices.append({"id": ident, "key": key, "type": kind, "tenant": TENANTS[i % 3]})

    def toml(self):
        out = []
        for d in self.devices:
            out.append(
                f'[[api_keys]]\nid = "k-{d["id"]}"\n'
                f'sha256 = "{hashlib.sha256(d["key"].encode()).hexdigest()}"\n'
                f'identity = "{d["id"]}"\ntenant = "{d["tenant"]}"\n'
                f'device_type = "{d["type"]}"\nroles = ["device"]\n'
            )
        return "\n".join(out)


class Stack:
    """Tansu + topics + backend + gateway + processor, on free loopback ports under `tmp`."""

    def __init__(self, tmp, tansu_bin, fleets, partitions=4):
        self.tmp = tmp
        self.tansu_bin = tansu_bin
        self.kafka = free_port()
        self.backend_port = free_port()
        self.gw_port, self.gw_metrics = free_port(), free_port()
        self.proc_metrics = free_port()
        keys = "\n".join(f.toml() for f in fleets)
        common = f"""
[bus]
kind = "kafka"
brokers = "127.0.0.1:{self.kafka}"
create_topics = false
partitions = {partitions}
replication_factor = 1

[rbac]
policy = "{tmp / 'rbac.toml'}"

[[routes]]
name = "devices"
prefix = "/api"
upstream = "http://127.0.0.1:{self.backend_port}"
timeout_ms = 2000
"""
        (tmp / "rbac.toml").write_text(
            'description = "soak and chaos"\n[roles.device]\nallow = [\n'
            '  { methods = ["POST"], path = "/api/devices/{identity}/telemetry" },\n'
            '  { methods = ["GET"], path = "/api/devices/{identity}/config" },\n]\n'
        )
        self.gw_config = tmp / "gateway.toml"
        self.gw_config.write_text(
            f'[gateway]\nid = "gw-chaos"\nlisten = "127.0.0.1:{self.gw_port}"\n'
            f'[gateway.spool]\ndir = "{tmp / "spool"}"\n'
            f'[metrics]\nlisten = "127.0.0.1:{self.gw_metrics}"\n{common}\n{keys}\n'
        )
        self.proc_config = tmp / "processor.toml"
        self.proc_config.write_text(
            f'[metrics]\nlisten = "127.0.0.1:{self.proc_metrics}"\n{common}\n'
        )
        (tmp / "tansu").mkdir(exist_ok=True)
        listener = f"tcp://127.0.0.1:{self.kafka}"
        self.tansu = Proc("tansu", [
            tansu_bin, "broker", "--cluster-id", "warden-chaos", "--listener-url", listener,
            "--advertised-listener-url", listener, "--storage-engine", "sqlite://tansu.db",
        ], tmp, cwd=tmp / "tansu")
        self.backend = Proc("backend", [WARDEN, "backend", "--listen", f"127.0.0.1:{self.backend_port}"], tmp)
        self.gateway = Proc("gateway", [WARDEN, "gateway", "--config", self.gw_config], tmp)
        self.processor = Proc("processor", [
            WARDEN, "processor", "--config", self.proc_config, "--no-dashboard",
            "--pipeline", ROOT / "pipelines" / "default.toml",
        ], tmp)

    def procs(self):
        return [self.tansu, self.backend, self.gateway, self.processor]

    def start_broker(self):
        self.tansu.start()
        wait_until("the broker's port", lambda: socket.create_connection(("127.0.0.1", self.kafka), timeout=1).close() or True, 30)

    def start_backend(self):
        self.backend.start()
        wait_until("the backend", lambda: socket.create_connection(("127.0.0.1", self.backend_port), timeout=1).close() or True, 30)

    def start_gateway(self):
        self.gateway.start()
        wait_until("the gateway's /readyz", lambda: http_get(self.gw_metrics, "/readyz")[0] == 200, 60)

    def start_processor(self):
        self.processor.start()
        wait_until("the processor's /readyz", lambda: http_get(self.proc_metrics, "/readyz")[0] == 200, 60)

    def start(self, processor=True):
        self.start_broker()
        r = subprocess.run([WARDEN, "topics", "--config", self.proc_config, "--wait", "60"],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"warden topics failed: {r.stdout}{r.stderr}")
        self.start_backend()
        self.start_gateway()
        if processor:
            self.start_processor()

    def gateway_metric(self, name):
        status, text = http_get(self.gw_metrics, "/metrics")
        return metric(text, name) if status == 200 else None

    def events(self):
        """Every request event on the bus (from the beginning to its end now), by id."""
        r = subprocess.run([WARDEN, "events", "--config", self.proc_config],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"warden events failed: {r.stderr[-2000:]}")
        out = {}
        for line in r.stdout.splitlines():
            if line.startswith("{"):
                e = json.loads(line)
                out[e["id"]] = e
        return out

    def shutdown(self):
        for p in reversed(self.procs()):
            if p.alive():
                p.stop(signal.SIGTERM, 20)


class Load:
    """Paced requests: every device sends at its own rate (exponential gaps), over keep-alive
    connections; each group of devices has worker threads (and so connections) of its own, as
    separate devices would. Each result is
    `(t_sent, device, group, status or None, request_id, latency_s, error)`."""

    def __init__(self, port):
        self.port = port
        self.groups = []  # (name, devices, rate_per_device, start_t, stop_t, workers)
        self.results = []
        self.stop_flag = threading.Event()
        self.threads = []
        self.t0 = None

    def add(self, name, devices, rate, start=0.0, stop=float("inf"), workers=1):
        self.groups.append((name, devices, rate, start, stop, workers))

    def start(self):
        self.t0 = time.time()
        i = 0
        for name, devices, rate, start, stop, workers in self.groups:
            heaps = [[] for _ in range(workers)]
            for k, d in enumerate(devices):
                heaps[k % workers].append((start + random.expovariate(rate), i, d, name, rate, stop))
                i += 1
            for heap in heaps:
                heapq.heapify(heap)
                out = []
                self.results.append(out)
                t = threading.Thread(target=self.run, args=(out, heap), daemon=True)
                t.start()
                self.threads.append(t)

    def elapsed(self):
        return time.time() - self.t0

    def finish(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=30)
        return sorted((r for rs in self.results for r in rs), key=lambda r: r[0])

    def run(self, out, heap):
        conn = None
        while not self.stop_flag.is_set() and heap:
            due, i, d, group, rate, stop = heap[0]
            if due >= stop:
                heapq.heappop(heap)
                continue
            wait = due - self.elapsed()
            if wait > 0:
                self.stop_flag.wait(min(wait, 0.05))
                continue
            heapq.heapreplace(heap, (due + random.expovariate(rate), i, d, group, rate, stop))
            t_sent = self.elapsed()
            body = json.dumps({"t": round(random.uniform(18, 24), 2), "n": len(out)}).encode()
            status, rid, err = None, None, None
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("POST", f"/api/devices/{d['id']}/telemetry", body,
                             {"X-Api-Key": d["key"], "Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                status, rid = r.status, r.getheader("x-request-id")
                if (r.getheader("connection") or "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                err = type(e).__name__
                if conn is not None:
                    conn.close()
                conn = None
            out.append((t_sent, d["id"], group, status, rid, self.elapsed() - t_sent, err))
        if conn is not None:
            conn.close()


def capacity(port, devices, seconds, threads=8):
    """Closed-loop requests/s the stack serves (each thread sends its next request as soon as
    the last one is answered), cycling over `devices`."""
    done = [0] * threads
    stop = time.time() + seconds

    def worker(k):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        i = k
        while time.time() < stop:
            d = devices[i % len(devices)]
            i += threads
            try:
                conn.request("POST", f"/api/devices/{d['id']}/telemetry", b'{"t":20}',
                             {"X-Api-Key": d["key"], "Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                if r.status == 200:
                    done[k] += 1
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.close()

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(done) / seconds
