//! Live configuration over real sockets: a gateway on 127.0.0.1 in front of a real upstream,
//! its config file changed under it. A key added to the file works at once while a load of
//! requests runs across the change, all answered; a rotated key works during the overlap and
//! not after; a bad change is refused whole with every problem listed; a route added and a
//! limit lowered take effect; a restart-only setting is reported, not applied.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::upstream;
use warden_config::{WardenConfig, hash_api_key};
use warden_gateway::{ConfigLoader, Gateway, LiveConfig};

const OLD: &str = "live-key-old-0123456789abcdef";
const NEW: &str = "live-key-new-0123456789abcdef";

fn route(name: &str, prefix: &str, upstream: &str) -> String {
    format!(
        "[[routes]]\nname = \"{name}\"\nprefix = \"{prefix}\"\nupstream = \"{upstream}\"\n\
         auth = \"api_key\"\n"
    )
}

fn api_key(id: &str, key: &str, identity: &str, window: &str) -> String {
    format!(
        "[[api_keys]]\nid = \"{id}\"\nsha256 = \"{}\"\nidentity = \"{identity}\"\n\
         tenant = \"acme\"\ndevice_type = \"sensor\"\nroles = []\n{window}",
        hash_api_key(key)
    )
}

/// Replace the file at once (write a temporary file, then rename), as operators should.
fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, path).expect("rename config");
}

struct Running {
    addr: SocketAddr,
    live: LiveConfig,
    file: PathBuf,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    async fn get(&self, path: &str, key: &str) -> u16 {
        self.client
            .get(format!("http://{}{path}", self.addr))
            .header("x-api-key", key)
            .send()
            .await
            .map_or(0, |r| r.status().as_u16())
    }

    /// Reload the file now (what SIGHUP does).
    async fn reload(&self) -> warden_gateway::LiveReport {
        let live = self.live.clone();
        tokio::task::spawn_blocking(move || live.reload())
            .await
            .expect("reload task")
    }
}

/// A gateway serving the config `text` from a file; `watch`: reload it when it changes (else
/// only on [`Running::reload`], so a test sees exactly what one reload did).
async fn start(text: &str, watch: bool) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("warden.toml");
    write(&file, text);
    let config = WardenConfig::load(Some(&file)).expect("valid config");
    let bus = common::bus(&config).await;
    let mut gateway = Gateway::start(&config, bus).await.expect("gateway");
    let f = file.clone();
    let loader: ConfigLoader = Arc::new(move || WardenConfig::load(Some(&f)));
    if watch {
        gateway.watch_config(file.clone(), loader, Duration::from_millis(100));
    } else {
        gateway.live().set_source(file.clone(), loader);
    }
    let live = gateway.live().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = gateway
            .serve(listener, async {
                let _ = rx.await;
            })
            .await;
    });
    Running {
        addr,
        live,
        file,
        client: reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client"),
        _dir: dir,
        stop,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_added_to_the_file_works_at_once_and_no_request_fails_across_the_change() {
    let up = format!("http://{}", upstream().await);
    let base = format!(
        "{}{}",
        route("api", "/api", &up),
        api_key("k-old", OLD, "dev-1", "")
    );
    let gw = Arc::new(start(&base, true).await);
    assert_eq!(gw.get("/api/t", OLD).await, 200);
    assert_eq!(gw.get("/api/t", NEW).await, 401, "not configured yet");

    // A load of concurrent requests with the existing key runs across the change.
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..8)
        .map(|_| {
            let (gw, stop) = (gw.clone(), stop.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    statuses.push(gw.get("/api/load", OLD).await);
                }
                statuses
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    write(
        &gw.file,
        &format!("{base}{}", api_key("k-new", NEW, "dev-2", "")),
    );
    // The watcher (every 100 ms) applies it: the new key's next request is 200.
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.get("/api/t", NEW).await != 200 {
        assert!(Instant::now() < deadline, "the added key never worked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(gw.live.generation(), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for task in load {
        let statuses = task.await.expect("load task");
        assert!(
            statuses.iter().all(|s| *s == 200),
            "a request failed across the reload: {statuses:?}"
        );
        total += statuses.len();
    }
    assert!(total > 50, "the load ran ({total} requests)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_works_during_the_overlap_and_not_after() {
    let up = format!("http://{}", upstream().await);
    let api = route("api", "/api", &up);
    let gw = start(
        &format!("{api}{}", api_key("k-old", OLD, "dev-1", "")),
        false,
    )
    .await;
    // Rotation: the new key from now, the old one until 2 s from now.
    let now_s = warden_event::now_ns().div_euclid(1_000_000_000);
    let at = |s: i64| warden_event::audit::rfc3339(s * 1_000_000_000);
    let rotated = format!(
        "{api}{}{}",
        api_key(
            "k-old",
            OLD,
            "dev-1",
            &format!("expires_at = \"{}\"\n", at(now_s + 2))
        ),
        api_key(
            "k-new",
            NEW,
            "dev-1",
            &format!("not_before = \"{}\"\n", at(now_s - 1))
        ),
    );
    write(&gw.file, &rotated);
    let report = gw.reload().await;
    assert!(report.applied, "{report:?}");
    assert_eq!(report.changed, vec!["api_keys"]);
    assert_eq!(gw.get("/api/t", OLD).await, 200, "old key in the overlap");
    assert_eq!(gw.get("/api/t", NEW).await, 200, "new key in the overlap");
    let until_expiry_ns = (now_s + 2) * 1_000_000_000 - warden_event::now_ns();
    let until_expiry = Duration::from_nanos(u64::try_from(until_expiry_ns).unwrap_or(0));
    tokio::time::sleep(until_expiry + Duration::from_millis(200)).await;
    assert_eq!(
        gw.get("/api/t", OLD).await,
        401,
        "old key after the overlap"
    );
    assert_eq!(gw.get("/api/t", NEW).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_change_is_refused_whole_with_every_problem_and_nothing_changes() {
    let up = format!("http://{}", upstream().await);
    let base = format!(
        "{}{}",
        route("api", "/api", &up),
        api_key("k-old", OLD, "dev-1", "")
    );
    let gw = start(&base, true).await;
    // A good part (a new key), a route to an unknown scheme, and a duplicate key id.
    let bad = format!(
        "{base}{}{}{}",
        api_key("k-new", NEW, "dev-2", ""),
        route("ftp", "/ftp", "ftp://127.0.0.1:21"),
        api_key("k-old", "another-secret-0123456789", "dev-3", ""),
    );
    write(&gw.file, &bad);
    let report = gw.reload().await;
    assert!(!report.applied);
    assert_eq!(report.generation, 0);
    let all = report.problems.join("\n");
    assert!(all.contains("routes[1].upstream"), "{all}");
    assert!(all.contains("duplicate key id `k-old`"), "{all}");
    assert_eq!(report.problems.len(), 2, "{all}");
    // The running config keeps serving, unchanged: the good part was not applied either.
    assert_eq!(gw.get("/api/t", OLD).await, 200);
    assert_eq!(gw.get("/api/t", NEW).await, 401);
    assert_eq!(gw.get("/ftp/x", OLD).await, 404);
    // The watcher saw the same file and refused it too: still generation 0.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gw.live.generation(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_added_and_a_limit_lowered_take_effect_and_restart_settings_are_reported() {
    let up = format!("http://{}", upstream().await);
    let keys = api_key("k-old", OLD, "dev-1", "");
    let limit = |burst: u32| format!("[limits.identity]\nrate_per_s = 0.01\nburst = {burst}\n");
    let gw = start(
        &format!("{}{keys}{}", route("api", "/api", &up), limit(100)),
        false,
    )
    .await;
    // (An unknown key: a probe with a valid one would count against its limit.)
    assert_eq!(gw.get("/v2/t", "unknown-key").await, 404);
    for _ in 0..3 {
        assert_eq!(gw.get("/api/t", OLD).await, 200);
    }
    // A new route, a lower burst, and a listener change (needs a restart).
    let changed = format!(
        "[gateway]\nlisten = \"127.0.0.1:1\"\n{}{}{keys}{}",
        route("api", "/api", &up),
        route("v2", "/v2", &up),
        limit(5)
    );
    write(&gw.file, &changed);
    let report = gw.reload().await;
    assert!(report.applied, "{report:?}");
    assert_eq!(report.changed, vec!["routes", "limits"]);
    assert_eq!(report.restart_needed, vec!["gateway.listen"]);
    assert_eq!(gw.get("/v2/t", OLD).await, 200, "the added route");
    // The bucket carried over: 3 + 1 spent of a burst now 5, so one more passes.
    assert_eq!(gw.get("/api/t", OLD).await, 200);
    assert_eq!(gw.get("/api/t", OLD).await, 429, "the lowered limit");
    // The same file again changes nothing live.
    let again = gw.reload().await;
    assert!(!again.applied && again.problems.is_empty(), "{again:?}");
    let _ = gw.stop;
}
