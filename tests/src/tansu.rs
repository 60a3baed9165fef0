//! A real Kafka-protocol broker for tests: [Tansu](https://github.com/tansu-io/tansu), run as a
//! child process on a free loopback port.
//!
//! The binary is found through `TANSU_BIN`, else `tansu` on `PATH`, else
//! [`CI_TANSU_BIN`]. When none exists the tests fail (they do not skip): install it with
//! `cargo install tansu --locked --features dynostore,libsql`.
//!
//! How it is run (Tansu 0.6):
//! - `tansu broker --listener-url tcp://127.0.0.1:PORT --advertised-listener-url
//!   tcp://127.0.0.1:PORT --storage-engine memory://tansu/` (or `sqlite://tansu.db`, relative
//!   to the working directory, which is the broker's temporary directory);
//! - topics are not created automatically: create them with the admin API
//!   (`Bus::ensure_topics`) or [`Tansu::create_topic`]; topic configs such as
//!   `cleanup.policy=compact` are stored and returned by DescribeConfigs;
//! - `TANSU_LOG` sets the broker's `RUST_LOG` (e.g. `TANSU_LOG=tansu_broker::coordinator=debug`
//!   for every JoinGroup/SyncGroup/Heartbeat/LeaveGroup and the group state after it); its
//!   output goes to `tansu.stdout.log`/`tansu.stderr.log` in its directory, which is removed
//!   on drop unless `TANSU_KEEP_DIR` is set;
//! - `SIGINT` stops it at once (`SIGTERM` waits up to 5 s for open connections);
//! - a broker starts in well under a second; two members of a new consumer group take about
//!   4 s to settle on a split (the coordinator holds a follower's JoinGroup for 3 s), a lone
//!   member gets its partitions within about a second, and when one of two members leaves, the
//!   other gets its partitions within about a second and a half (the bus's 1 s heartbeat).
//!
//! **Prefer [`Tansu::start_sqlite`].** The in-memory engine of [`Tansu::start`] has two bugs
//! (Tansu 0.6 "dynostore"):
//! - the high watermark (ListOffsets latest) is the first offset of the last record batch plus
//!   one, not its last offset plus one: end offsets are short as soon as the producer batches
//!   several records (so `read_to_end` stops early);
//! - a fetch from an offset inside a record batch skips the rest of that batch: a group
//!   resuming from a committed position in the middle of a batch loses those records.
//!
//! The sqlite engine has neither.
//!
//! **Consumer groups: never let a leader leave a rebalancing group.** Tansu 0.6's group
//! coordinator (`tansu-broker` 0.6.0, `coordinator/group/administrator.rs`) handles a
//! LeaveGroup in a group that is rebalancing ("forming": a member joined or left, and the
//! leader has not sent the new assignment yet) by removing the member but keeping it as the
//! group's leader. Every later JoinGroup then names that departed member as leader, so the
//! members that are left (or join later) are all followers, their SyncGroup fails with
//! `REBALANCE_IN_PROGRESS`, and they rejoin every 3 s without ever getting partitions. Nothing
//! repairs it: the session timeout only drops *members* that stopped heartbeating (and only
//! then clears their leadership), and the group's state is kept in the storage, so a restart
//! keeps it. A leader leaving a stable group is fine (the group forgets it as leader), and so
//! is a leader that vanishes without leaving (dropped with its leadership once it missed
//! heartbeats for the session timeout). Real Kafka elects a new leader in every case.
//!
//! Typical trigger: two members of a group dropped back to back, the first one not being the
//! leader (the leader is the member that joined first, so it is a coin toss). Let a group
//! settle between departures instead (e.g. until the remaining member reads records of the
//! partitions of the one that left).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Where CI installs the Tansu binary.
pub const CI_TANSU_BIN: &str = "/var/cache/warden-ci/tools/bin/tansu";

/// How long a broker may take to answer metadata requests after being started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

const STDOUT_LOG: &str = "tansu.stdout.log";
const STDERR_LOG: &str = "tansu.stderr.log";
const SQLITE_FILE: &str = "tansu.db";

/// A running Tansu broker, killed on drop.
pub struct Tansu {
    /// The loopback port it listens on and advertises.
    pub port: u16,
    child: Option<Child>,
    /// Working directory: logs, and the database of sqlite storage.
    dir: TempDir,
    /// `--storage-engine` URL.
    storage: String,
    bin: PathBuf,
    /// Whether the logs were already printed in a panic message.
    logs_shown: bool,
}

impl Tansu {
    /// A broker keeping everything in memory. Beware its end offsets and mid-batch fetches
    /// (see the module documentation); [`Tansu::start_sqlite`] has neither problem.
    pub fn start() -> Tansu {
        Self::launch(temp_dir(), "memory://tansu/")
    }

    /// A broker storing its data in a sqlite database in a new temporary directory, so it can
    /// be stopped and started again ([`Tansu::stop`], [`Tansu::start_again`]) keeping its
    /// topics, records and committed offsets.
    pub fn start_sqlite() -> Tansu {
        Self::start_sqlite_in(temp_dir())
    }

    /// Like [`Tansu::start_sqlite`], in `dir` (whose `tansu.db`, if any, is reused).
    pub fn start_sqlite_in(dir: TempDir) -> Tansu {
        Self::launch(dir, &format!("sqlite://{SQLITE_FILE}"))
    }

    fn launch(mut dir: TempDir, storage: &str) -> Tansu {
        let bin = tansu_bin();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut tansu = Tansu {
                port: free_port(),
                child: None,
                dir,
                storage: storage.to_string(),
                bin: bin.clone(),
                logs_shown: false,
            };
            match tansu.spawn_and_wait() {
                Ok(()) => return tansu,
                // Someone took the port between picking and binding it: pick another.
                Err(e) if attempt < 3 && tansu.logs().contains("in use") => {
                    eprintln!("tansu: port {} taken ({e}), retrying", tansu.port);
                    tansu.kill();
                    dir = tansu.take_dir();
                }
                Err(e) => tansu.fail(&e),
            }
        }
    }

    /// `host:port` to bootstrap from.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's working directory (logs, sqlite database).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stop the broker (`SIGINT`, then `SIGKILL` if it has not exited after 5 s). Data of
    /// sqlite storage is kept for [`Tansu::start_again`].
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kill the broker at once (`SIGKILL`), like a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start the stopped broker again, on the same port with the same storage (the data of
    /// memory storage is lost, of course). Panics if it is running.
    pub fn start_again(&mut self) {
        assert!(
            self.child.is_none(),
            "tansu is still running: stop() it first"
        );
        // The port was free a moment ago; give the kernel a few tries to release it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(_) if Instant::now() < deadline && self.logs().contains("in use") => {
                    self.kill();
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => self.fail(&e),
            }
        }
    }

    /// Whether the broker process is alive.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Create `name` with `partitions` partitions using `tansu topic create`.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        let output = Command::new(&self.bin)
            .args(["topic", "create", name, "--broker"])
            .arg(format!("tcp://127.0.0.1:{}", self.port))
            .args(["--partitions", &partitions.to_string()])
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .output()
            .unwrap_or_else(|e| panic!("running {} topic create: {e}", self.bin.display()));
        assert!(
            output.status.success(),
            "tansu topic create {name} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The broker's stdout and stderr so far.
    pub fn logs(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!(
            "--- tansu stdout ---\n{}\n--- tansu stderr ---\n{}",
            tail(&read(STDOUT_LOG), 60),
            tail(&read(STDERR_LOG), 200)
        )
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let listener = format!("tcp://127.0.0.1:{}", self.port);
        let stdout = log_file(self.dir.path(), STDOUT_LOG);
        let stderr = log_file(self.dir.path(), STDERR_LOG);
        let mut command = Command::new(&self.bin);
        command
            .arg("broker")
            .args(["--cluster-id", "warden-tests"])
            .args(["--listener-url", &listener])
            .args(["--advertised-listener-url", &listener])
            .args(["--storage-engine", &self.storage])
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        if let Ok(filter) = std::env::var("TANSU_LOG") {
            command.env("RUST_LOG", filter);
        }
        let child = command
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.bin.display()))?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Wait until the broker answers a metadata request advertising `127.0.0.1:port`.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last_error = String::from("not tried");
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("tansu exited with {status} ({last_error})"));
            }
            match metadata_brokers(self.port) {
                Ok(brokers) => {
                    return if brokers
                        .iter()
                        .any(|(_, host, port)| host == "127.0.0.1" && *port == i32::from(self.port))
                    {
                        Ok(())
                    } else {
                        Err(format!(
                            "tansu advertises {brokers:?}, not 127.0.0.1:{}",
                            self.port
                        ))
                    };
                }
                Err(e) => last_error = e.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no metadata answer within {READY_TIMEOUT:?} ({last_error})"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn fail(&mut self, error: &str) -> ! {
        self.kill();
        self.logs_shown = true;
        panic!(
            "tansu broker on port {} ({} {}) did not start: {error}\n{}",
            self.port,
            self.bin.display(),
            self.storage,
            self.logs()
        );
    }

    /// Move the directory out (for a retry), leaving an empty placeholder.
    fn take_dir(&mut self) -> TempDir {
        std::mem::replace(&mut self.dir, temp_dir())
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() && !self.logs_shown {
            eprintln!("tansu broker on port {}:\n{}", self.port, self.logs());
        }
        if std::env::var_os("TANSU_KEEP_DIR").is_some() {
            self.dir.disable_cleanup(true);
            eprintln!(
                "tansu broker on port {}: directory kept: {}",
                self.port,
                self.dir.path().display()
            );
        }
    }
}

/// The Tansu binary: `TANSU_BIN`, else `tansu` on `PATH`, else [`CI_TANSU_BIN`].
pub fn tansu_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("TANSU_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "TANSU_BIN={} is not a file; install Tansu with \
             `cargo install tansu --locked --features dynostore,libsql`",
            bin.display()
        );
        return bin;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let bin = dir.join("tansu");
            if bin.is_file() {
                return bin;
            }
        }
    }
    let bin = PathBuf::from(CI_TANSU_BIN);
    assert!(
        bin.is_file(),
        "the Tansu broker binary was not found (TANSU_BIN unset, no `tansu` on PATH, no {CI_TANSU_BIN}); \
         these tests need a real Kafka-protocol broker: install it with \
         `cargo install tansu --locked --features dynostore,libsql` (or set TANSU_BIN)"
    );
    bin
}

fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("warden-tansu-")
        .tempdir()
        .unwrap_or_else(|e| panic!("creating a temporary directory for tansu: {e}"))
}

fn log_file(dir: &Path, name: &str) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .unwrap_or_else(|e| panic!("opening {}: {e}", dir.join(name).display()))
}

/// A port that was free on loopback a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("finding a free port: {e}"))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The brokers (`node_id`, host, port) advertised by the broker on `port`, from a Metadata v1
/// request asking for no topics (raw protocol, so this works before any client is set up).
fn metadata_brokers(port: u16) -> io::Result<Vec<(i32, String, i32)>> {
    const CORRELATION_ID: i32 = 0x5741_5244;
    let client_id = b"warden-tests";
    let mut request = Vec::new();
    request.extend_from_slice(&3i16.to_be_bytes()); // api key: Metadata
    request.extend_from_slice(&1i16.to_be_bytes()); // api version
    request.extend_from_slice(&CORRELATION_ID.to_be_bytes());
    request.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    request.extend_from_slice(client_id);
    request.extend_from_slice(&0i32.to_be_bytes()); // topics: none

    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(&(request.len() as i32).to_be_bytes())?;
    stream.write_all(&request)?;

    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let size = i32::from_be_bytes(size);
    if !(4..=1 << 20).contains(&size) {
        return Err(invalid(format!("metadata response of {size} bytes")));
    }
    let mut response = vec![0u8; size as usize];
    stream.read_exact(&mut response)?;

    let mut r = Reader(&response);
    let correlation_id = r.i32()?;
    if correlation_id != CORRELATION_ID {
        return Err(invalid(format!("correlation id {correlation_id}")));
    }
    let count = r.i32()?;
    let mut brokers = Vec::new();
    for _ in 0..count.max(0) {
        let node_id = r.i32()?;
        let host = r.string()?.unwrap_or_default();
        let port = r.i32()?;
        let _rack = r.string()?;
        brokers.push((node_id, host, port));
    }
    Ok(brokers)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Big-endian Kafka protocol primitives.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.0.len() < n {
            return Err(invalid("truncated metadata response".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn i16(&mut self) -> io::Result<i16> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> io::Result<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A nullable string.
    fn string(&mut self) -> io::Result<Option<String>> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        Ok(Some(
            String::from_utf8_lossy(self.take(len as usize)?).into_owned(),
        ))
    }
}
