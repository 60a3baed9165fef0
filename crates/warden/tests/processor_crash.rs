//! Crash test of the processor (issue: durable event pipeline): the real `warden processor`
//! binary, on a real Kafka-protocol broker (Tansu, SQLite storage), is killed with SIGKILL
//! while it processes events, and restarted. The restarted processor resumes from the committed
//! offsets with the state of its checkpoints: the quarantines that need counts from before the
//! crash happen, and none is published twice.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use warden_bus::{Bus, KafkaBus, KafkaConfig, TopicSpec};

#[allow(dead_code, clippy::unwrap_used)]
#[path = "../../../tests/src/tansu.rs"]
mod tansu;

#[path = "../../../tests/src/processing.rs"]
mod processing;

use processing::{counting_pipeline, until};

async fn publish(bus: &dyn Bus, identities: &[String], n: u64, pause: Duration) -> u64 {
    processing::publish(bus, EVENTS, identities, n, pause).await
}

async fn quarantines(bus: &dyn Bus) -> BTreeMap<String, usize> {
    processing::quarantines(bus, DECISIONS).await
}

const EVENTS: &str = "warden.events";
const DECISIONS: &str = "warden.decisions";

/// A `warden processor` child process, killed (SIGKILL) when dropped.
struct ProcessorProcess {
    child: Child,
    metrics: String,
    log: std::path::PathBuf,
}

impl ProcessorProcess {
    fn start(dir: &Path, name: &str) -> Self {
        let log = dir.join(format!("{name}.stderr.log"));
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
            .arg("processor")
            .arg("--config")
            .arg(dir.join("warden.toml"))
            .arg("--pipeline")
            .arg(dir.join("pipeline.toml"))
            .arg("--no-dashboard")
            .env("RUST_LOG", "warn,warden=info,warden_stream=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn warden processor");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("metrics") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let mut p = Self {
            child,
            metrics: String::new(),
            log,
        };
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(url) => p.metrics = url,
            Err(e) => panic!(
                "the processor announced no metrics URL ({e}):\n{}",
                p.logs()
            ),
        }
        p
    }

    fn logs(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(200)..].join("\n")
    }

    /// Its processor metrics, by name (the `pipeline` label dropped).
    async fn metrics(&self, client: &reqwest::Client) -> BTreeMap<String, u64> {
        let Ok(r) = client.get(&self.metrics).send().await else {
            return BTreeMap::new();
        };
        let text = r.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with("warden_processor_") && !l.contains("partition="))
            .filter_map(|l| {
                let (name, value) = l.split_once(' ')?;
                let name = name.split('{').next()?;
                Some((name.to_string(), value.trim().parse().ok()?))
            })
            .collect()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ProcessorProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- processor log ({}) ---\n{}",
                self.log.display(),
                self.logs()
            );
        }
    }
}

fn get(m: &BTreeMap<String, u64>, name: &str) -> u64 {
    m.get(name).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_processor_resumes_with_its_state_and_decides_once() {
    let broker = tansu::Tansu::start_sqlite();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("warden.toml"),
        format!(
            "[gateway]\nid = \"proc-crash\"\n[bus]\nkind = \"kafka\"\nbrokers = \"{}\"\npartitions = 4\n\
             [dashboard]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
            broker.brokers()
        ),
    )
    .expect("config");
    // Quarantine an identity with more than 20 requests in 5 minutes.
    std::fs::write(
        dir.path().join("pipeline.toml"),
        counting_pipeline("crash-group", 20),
    )
    .expect("pipeline");
    let bus: Arc<dyn Bus> =
        Arc::new(KafkaBus::connect(KafkaConfig::new(broker.brokers())).expect("bus"));
    let specs: Vec<TopicSpec> = [EVENTS, DECISIONS, "warden.alerts"]
        .iter()
        .map(|t| TopicSpec {
            name: (*t).to_string(),
            partitions: 4,
            compacted: *t == DECISIONS,
            retention_ms: None,
        })
        .collect();
    bus.ensure_topics(&specs).await.expect("topics");
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");

    let mut first = ProcessorProcess::start(dir.path(), "first");
    until(
        "the first processor's partitions",
        Duration::from_secs(90),
        async || {
            get(
                &first.metrics(&client).await,
                "warden_processor_assigned_partitions",
            ) == 4
        },
    )
    .await;

    // Phase A: two devices flood (25 > 20: quarantined now), eight send 12 (not yet), and
    // quiet devices 3.
    let early: Vec<String> = (0..2).map(|i| format!("early-{i}")).collect();
    let offenders: Vec<String> = (0..8).map(|i| format!("dev-{i}")).collect();
    let quiet: Vec<String> = (0..6).map(|i| format!("quiet-{i}")).collect();
    let a = publish(&*bus, &early, 25, Duration::ZERO).await
        + publish(&*bus, &offenders, 12, Duration::ZERO).await
        + publish(&*bus, &quiet, 3, Duration::ZERO).await;
    until(
        "phase A processed and committed",
        Duration::from_secs(60),
        async || {
            let m = first.metrics(&client).await;
            get(&m, "warden_processor_events_total") == a
                && get(&m, "warden_processor_uncommitted_partitions") == 0
        },
    )
    .await;
    let before = quarantines(&*bus).await;
    assert_eq!(
        before.len(),
        2,
        "the early floods are quarantined: {before:?}"
    );

    // Phase B, sent slowly; the processor is killed as soon as it has started on it.
    let sender = {
        let bus = bus.clone();
        let (early, offenders) = (early.clone(), offenders.clone());
        tokio::spawn(async move {
            publish(&*bus, &early, 2, Duration::from_millis(15)).await
                + publish(&*bus, &offenders, 4, Duration::from_millis(15)).await
        })
    };
    until("phase B started", Duration::from_secs(60), async || {
        get(
            &first.metrics(&client).await,
            "warden_processor_events_total",
        ) > a
    })
    .await;
    first.kill();
    let b = sender.await.expect("phase B");
    // The group drops the dead member once it has missed heartbeats for the session timeout.
    // Restart after that: Tansu 0.6 keeps a vanished leader as the leader of a group that is
    // rebalancing when it drops it (see `warden_tests::tansu`), so a member joining before
    // would never get partitions; real Kafka hands them over either way.
    tokio::time::sleep(KafkaConfig::GROUP_SESSION_TIMEOUT + Duration::from_secs(5)).await;

    let second = ProcessorProcess::start(dir.path(), "second");
    until(
        "the restarted processor's partitions",
        Duration::from_secs(120),
        async || {
            get(
                &second.metrics(&client).await,
                "warden_processor_assigned_partitions",
            ) == 4
        },
    )
    .await;
    // Phase C: 8 more each (12 + 4 + 8 = 24 > 20 only with the counts from before the crash);
    // the early floods go on (already quarantined: nothing new to publish).
    let c = publish(&*bus, &offenders, 8, Duration::ZERO).await
        + publish(&*bus, &early, 5, Duration::ZERO).await
        + publish(&*bus, &quiet, 2, Duration::ZERO).await;
    until(
        "every offender quarantined",
        Duration::from_secs(90),
        async || quarantines(&*bus).await.len() == early.len() + offenders.len(),
    )
    .await;
    // Everything read: no lag, and every record of phases B and C seen (processed, or
    // skipped as already in the restored state).
    until(
        "the restarted processor caught up",
        Duration::from_secs(60),
        async || {
            let m = second.metrics(&client).await;
            let seen = get(&m, "warden_processor_events_total")
                + get(&m, "warden_processor_redelivered_records_total")
                + get(&m, "warden_processor_duplicate_events_total");
            seen >= c && get(&m, "warden_processor_consumer_lag") == 0
        },
    )
    .await;
    let m = second.metrics(&client).await;
    eprintln!("phases: A {a}, B {b}, C {c} records; restarted processor: {m:?}");
    let seen = get(&m, "warden_processor_events_total")
        + get(&m, "warden_processor_redelivered_records_total")
        + get(&m, "warden_processor_duplicate_events_total");
    assert!(
        seen <= b + c,
        "resumed from the committed offsets: {seen} records read, phase A ({a}) was committed"
    );
    assert!(
        get(&m, "warden_processor_restores_total") >= 1,
        "state restored from checkpoints: {m:?}"
    );
    let expected: BTreeMap<String, usize> = early
        .iter()
        .chain(&offenders)
        .map(|s| (s.clone(), 1))
        .collect();
    assert_eq!(
        quarantines(&*bus).await,
        expected,
        "every offender quarantined once, nobody else"
    );
    drop(second);
}
