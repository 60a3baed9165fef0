//! Live configuration: the settings of the config file that change without a restart — routes,
//! API keys, rate and concurrency limits, validation settings (body limits, content types,
//! JSON Schemas) and the RBAC policy files it names.
//!
//! A change (the file changed, SIGHUP, or [`LiveConfig::apply`]) is validated with the same
//! checks as `warden check`; then the new state is built completely and swapped in at once
//! ([`ArcSwap`]: a request takes one snapshot at its start and keeps it, and reading it takes
//! no lock). A change with any problem is refused whole, every problem logged and returned,
//! and the running configuration keeps serving. Rate-limit buckets and in-flight counters are
//! carried over into the new state, so a reload resets nobody's limits.
//!
//! Everything else (listeners, TLS listener settings, bus, admin API, identity sources, paths,
//! connection limits…) is read once at start: a change to it is logged as needing a restart
//! and not applied, while the live settings of the same change are.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::Serialize;
use tracing::{info, warn};
use warden_config::{ConfigErrors, WardenConfig};

mod changes;
mod managed;
pub(crate) use managed::{Managed, load as load_managed, merge as merge_managed};

use crate::identity::api_key::KeyStore;
use crate::ratelimit::{Clock, RateLimits};
use crate::rbac::PolicyStore;
use crate::routes::RouteTable;
use crate::shed::Shedder;
use crate::validate::HeaderLimits;

/// The live settings as one snapshot.
pub(crate) struct LiveState {
    pub generation: u64,
    pub routes: RouteTable,
    pub keys: KeyStore,
    /// Routes with `require_mtls = true`, by name.
    pub mtls_routes: HashSet<String>,
    pub limits: RateLimits,
    pub shedder: Shedder,
    /// `validation.max_headers` / `max_header_bytes`.
    pub headers: HeaderLimits,
    /// `gateway.max_body_bytes`: the body limit of routes without their own.
    pub max_body: u64,
    /// The config this state was built from: the file's, with the API-managed keys (to tell
    /// what a change touches, and for the admin API).
    pub config: WardenConfig,
}

impl LiveState {
    pub fn new(config: &WardenConfig, clock: Arc<dyn Clock>) -> Self {
        Self::build(
            config,
            0,
            RouteTable::new(&config.routes),
            RateLimits::new(&config.limits, clock),
            Shedder::new(&config.limits),
        )
    }

    /// The state of `config`, keeping this state's limiter buckets, in-flight counters and
    /// the upstream health of routes whose upstream and resilience settings did not change.
    fn next(&self, config: &WardenConfig) -> Self {
        Self::build(
            config,
            self.generation + 1,
            RouteTable::carry_over(&config.routes, &self.routes),
            RateLimits::carry_over(&config.limits, &self.limits),
            Shedder::carry_over(&config.limits, &self.shedder),
        )
    }

    fn build(
        config: &WardenConfig,
        generation: u64,
        routes: RouteTable,
        limits: RateLimits,
        shedder: Shedder,
    ) -> Self {
        Self {
            generation,
            routes,
            keys: KeyStore::new(&config.api_keys),
            mtls_routes: config
                .routes
                .iter()
                .filter(|r| r.require_mtls)
                .map(|r| r.name.clone())
                .collect(),
            limits,
            shedder,
            headers: HeaderLimits::new(config),
            max_body: config.gateway.max_body_bytes,
            config: config.clone(),
        }
    }
}

/// Reads the config again, with the same layers as at start (defaults, file, environment).
pub type ConfigLoader = Arc<dyn Fn() -> Result<WardenConfig, ConfigErrors> + Send + Sync>;

/// What one reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LiveReport {
    /// The change was applied (false: refused, or nothing live changed).
    pub applied: bool,
    /// The generation serving now (0 at start, +1 per applied change).
    pub generation: u64,
    /// Live settings the change touched (`routes`, `api_keys`, `limits`, …).
    pub changed: Vec<&'static str>,
    /// Every problem of a refused change (`warden check`'s wording).
    pub problems: Vec<String>,
    /// Settings that changed in the file but apply only at the next start.
    pub restart_needed: Vec<&'static str>,
}

/// The running gateway's live settings and how to reload them.
#[derive(Clone)]
pub struct LiveConfig {
    inner: Arc<Inner>,
}

struct Inner {
    state: Arc<ArcSwap<LiveState>>,
    policies: Arc<PolicyStore>,
    /// The config file and how to read it, when the gateway has one.
    source: Mutex<Option<(PathBuf, ConfigLoader)>>,
    /// Serialises changes (requests never wait on it).
    books: Mutex<Books>,
    /// Who calls deprecated routes (kept across reloads).
    deprecated: Arc<crate::deprecation::DeprecatedCalls>,
}

/// What changes are made against.
struct Books {
    /// The config file's stamp when last read.
    stamp: Option<(SystemTime, u64)>,
    /// The config file's own settings as last applied (without the API-managed keys).
    file_config: WardenConfig,
    /// `admin.keys_file` and the keys, routes and limits in it.
    keys_file: Option<PathBuf>,
    managed: Managed,
    /// The keys file's stamp when this gateway last read or wrote it.
    keys_stamp: Option<(SystemTime, u64)>,
}

/// Why the admin API's change of a key, a route or the limits was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyChangeError {
    /// No `admin.keys_file`: keys, routes and limits change only in the config file.
    NoKeysFile,
    /// The key or route is the config file's: change it there.
    FileManaged,
    /// No API-managed key or route has that id or name.
    NotFound,
    /// The change does not validate, or could not be written; every problem.
    Refused(Vec<String>),
}

impl LiveConfig {
    pub(crate) fn new(
        state: Arc<ArcSwap<LiveState>>,
        policies: Arc<PolicyStore>,
        file_config: WardenConfig,
        keys_file: Option<PathBuf>,
        managed: Managed,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                state,
                policies,
                source: Mutex::new(None),
                deprecated: Arc::default(),
                books: Mutex::new(Books {
                    stamp: None,
                    file_config,
                    keys_stamp: keys_file.as_deref().and_then(stamp),
                    keys_file,
                    managed,
                }),
            }),
        }
    }

    /// The snapshot serving now.
    pub(crate) fn snapshot(&self) -> Arc<LiveState> {
        self.inner.state.load_full()
    }

    /// Who calls deprecated routes.
    pub fn deprecated_calls(&self) -> &Arc<crate::deprecation::DeprecatedCalls> {
        &self.inner.deprecated
    }

    /// Deprecated and sunset routes now, each with its callers (most recent first): the
    /// operator's list of devices still to update.
    pub fn deprecated(&self) -> Vec<serde_json::Value> {
        let now_s = warden_event::now_ns() / 1_000_000_000;
        let time = |t: Option<i64>| t.map(crate::deprecation::http_date);
        self.snapshot()
            .routes
            .all()
            .filter_map(|r| {
                let d = r.deprecation.as_ref()?;
                Some(serde_json::json!({
                    "route": r.name,
                    "version": d.version,
                    "deprecated_at": time(d.deprecated_at),
                    "sunset_at": time(d.sunset_at),
                    "deprecated_now": d.deprecated(now_s),
                    "gone": d.gone(now_s),
                    "callers": self.inner.deprecated.callers(&r.name),
                }))
            })
            .collect()
    }

    /// Each route's upstream health now.
    pub fn upstream_health(&self) -> Vec<crate::health::RouteHealth> {
        self.snapshot()
            .routes
            .all()
            .map(|r| crate::health::RouteHealth {
                route: r.name.clone(),
                checked: r.probe.is_some(),
                down: r.health.down(),
                ejected: r.health.ejected(),
            })
            .collect()
    }

    /// The rate limiters' occupancy now (the tables carry over reloads).
    pub fn limiter_stats(&self) -> Vec<crate::ratelimit::LimiterStats> {
        self.snapshot().limits.stats()
    }

    /// Reload from `file`, read by `loader`, on [`LiveConfig::reload`] and when it changes.
    pub fn set_source(&self, file: PathBuf, loader: ConfigLoader) {
        self.inner.books.lock().stamp = stamp(&file);
        *self.inner.source.lock() = Some((file, loader));
    }

    /// Whether a config file was given to reload from.
    pub fn has_source(&self) -> bool {
        self.inner.source.lock().is_some()
    }

    /// The generation serving now.
    pub fn generation(&self) -> u64 {
        self.inner.state.load().generation
    }

    /// Read the config file again and apply it (SIGHUP, the admin API). Blocking: reads
    /// files.
    pub fn reload(&self) -> LiveReport {
        let source = self.inner.source.lock().clone();
        let Some((file, loader)) = source else {
            return refused(
                self.generation(),
                vec!["the gateway was started without a config file to reload".into()],
            );
        };
        let mut books = self.inner.books.lock();
        books.stamp = stamp(&file);
        match loader() {
            Ok(config) => self.apply_locked(&mut books, config),
            Err(e) => {
                let report = refused(self.generation(), lines(e));
                log_refused(&report);
                report
            }
        }
    }

    /// Reload when the config file changed since it was last read, and apply the keys file
    /// when another gateway sharing it (or an operator) changed it. Blocking.
    pub fn reload_if_changed(&self) -> Option<LiveReport> {
        let keys = {
            let mut books = self.inner.books.lock();
            self.refresh_managed(&mut books)
        };
        let file = self.inner.source.lock().as_ref().map(|(f, _)| f.clone());
        match file {
            Some(f) if stamp(&f) != self.inner.books.lock().stamp => Some(self.reload()),
            _ => keys,
        }
    }

    /// Check the file every `interval` and reload it when it changed.
    pub fn watch(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let m = me.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || m.reload_if_changed()).await {
                    warn!(error = %e, "Config file check failed.");
                }
            }
        })
    }

    /// Validate the config file's `config` and apply its live settings at once, or refuse it
    /// whole. Blocking: reads the policy and schema files it names.
    pub fn apply(&self, config: WardenConfig) -> LiveReport {
        let mut books = self.inner.books.lock();
        self.apply_locked(&mut books, config)
    }

    fn apply_locked(&self, books: &mut Books, config: WardenConfig) -> LiveReport {
        let merged = match merge_managed(&config, &books.managed, books.keys_file.as_deref()) {
            Ok(m) => m,
            Err(problems) => {
                let report = refused(self.generation(), problems);
                log_refused(&report);
                return report;
            }
        };
        let report = self.swap_in(merged, || Ok(()));
        if report.problems.is_empty() {
            books.file_config = config;
        }
        report
    }

    /// Validate `merged` (the file's config with the managed keys), run `persist`, then swap
    /// the new state in; any problem refuses the whole change.
    fn swap_in(
        &self,
        merged: WardenConfig,
        persist: impl FnOnce() -> Result<(), String>,
    ) -> LiveReport {
        let current = self.inner.state.load_full();
        // The loader validated the file already; the merged config is checked the same way.
        let mut problems = merged.validate().err().map(lines).unwrap_or_default();
        let prepared = match self.inner.policies.prepare(&merged) {
            Ok(p) => Some(p),
            Err(e) => {
                problems.extend(lines(e));
                None
            }
        };
        let (Some(prepared), true) = (prepared, problems.is_empty()) else {
            let report = refused(current.generation, problems);
            log_refused(&report);
            return report;
        };
        let restart_needed = restart_needed(&current.config, &merged);
        for s in &restart_needed {
            warn!(
                setting = s,
                "Config change needs a restart; the running value stays until then."
            );
        }
        let changed = live_changes(&current.config, &merged);
        if changed.is_empty() {
            return LiveReport {
                applied: false,
                generation: current.generation,
                changed,
                problems: Vec::new(),
                restart_needed,
            };
        }
        if let Err(problem) = persist() {
            let report = refused(current.generation, vec![problem]);
            log_refused(&report);
            return report;
        }
        let next = current.next(&merged);
        let generation = next.generation;
        self.inner.policies.commit(prepared);
        self.inner.state.store(Arc::new(next));
        retire(current);
        info!(
            generation,
            changed = ?changed,
            routes = merged.routes.len(),
            api_keys = merged.api_keys.len(),
            "Config applied live."
        );
        LiveReport {
            applied: true,
            generation,
            changed,
            problems: Vec::new(),
            restart_needed,
        }
    }
}

/// Free a replaced state off the request path. Freeing a million keys takes hundreds of
/// milliseconds, and whoever lets go of the last reference pays it: without this, a request
/// that started on the old snapshot and finished after the swap (measured by
/// `benches/device_store.rs`: a 426 ms request at 1 M devices). A thread holds the old state
/// until every request has let go of it, then frees it.
fn retire(old: Arc<LiveState>) {
    let reaper = std::thread::Builder::new()
        .name("warden-retire".into())
        .spawn(move || retire_when_unshared(old));
    if let Err(e) = reaper {
        // The state was dropped with the closure, here: correct, only slower.
        warn!(error = %e, "No thread to free the replaced config on.");
    }
}

fn retire_when_unshared<T>(old: Arc<T>) {
    while Arc::strong_count(&old) > 1 {
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(old);
}

fn refused(generation: u64, problems: Vec<String>) -> LiveReport {
    LiveReport {
        applied: false,
        generation,
        problems,
        ..LiveReport::default()
    }
}

fn log_refused(report: &LiveReport) {
    for p in &report.problems {
        warn!(problem = %p, "Config change refused; the running config stays.");
    }
}

fn lines(e: ConfigErrors) -> Vec<String> {
    e.0.iter().map(ToString::to_string).collect()
}

fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    std::fs::metadata(path)
        .ok()
        .and_then(|m| Some((m.modified().ok()?, m.len())))
}

/// The live settings that differ between `old` and `new`.
fn live_changes(old: &WardenConfig, new: &WardenConfig) -> Vec<&'static str> {
    [
        ("routes", old.routes != new.routes),
        ("api_keys", old.api_keys != new.api_keys),
        ("limits", old.limits != new.limits),
        ("validation", old.validation != new.validation),
        (
            "rbac",
            old.rbac.policy != new.rbac.policy || old.rbac.shadow_policy != new.rbac.shadow_policy,
        ),
        (
            "gateway.max_body_bytes",
            old.gateway.max_body_bytes != new.gateway.max_body_bytes,
        ),
    ]
    .into_iter()
    .filter_map(|(name, differs)| differs.then_some(name))
    .collect()
}

/// The settings read only at start that differ between `old` and `new`.
pub(crate) fn restart_needed(old: &WardenConfig, new: &WardenConfig) -> Vec<&'static str> {
    let (o, n) = (&old.gateway, &new.gateway);
    let mut rbac = new.rbac.clone();
    rbac.policy.clone_from(&old.rbac.policy);
    rbac.shadow_policy.clone_from(&old.rbac.shadow_policy);
    [
        ("gateway.id", o.id != n.id),
        ("gateway.listen", o.listen != n.listen),
        ("gateway.workers", o.workers != n.workers),
        ("gateway.tls", o.tls != n.tls),
        ("gateway.connections", o.connections != n.connections),
        ("gateway.spool", o.spool != n.spool),
        ("gateway.event_queue", o.event_queue != n.event_queue),
        (
            "gateway.decisions_bootstrap_timeout_ms",
            o.decisions_bootstrap_timeout_ms != n.decisions_bootstrap_timeout_ms,
        ),
        (
            "gateway.trust_forwarded_for",
            o.trust_forwarded_for != n.trust_forwarded_for,
        ),
        (
            "gateway.query_hash_key",
            o.query_hash_key != n.query_hash_key,
        ),
        (
            "gateway.method_override",
            o.method_override != n.method_override,
        ),
        ("bus", old.bus != new.bus),
        ("dashboard", old.dashboard != new.dashboard),
        ("metrics", old.metrics != new.metrics),
        ("paths", old.paths != new.paths),
        ("rbac.reload_interval_ms", old.rbac != rbac),
        ("admin", old.admin != new.admin),
        ("identity", old.identity != new.identity),
        ("at_rest", old.at_rest != new.at_rest),
        ("audit", old.audit != new.audit),
    ]
    .into_iter()
    .filter_map(|(name, differs)| differs.then_some(name))
    .collect()
}

#[cfg(test)]
mod retire_tests {
    use super::*;

    #[test]
    fn a_replaced_state_is_freed_by_the_reaper_once_requests_let_go() {
        let old = Arc::new(vec![0u8; 1024]);
        let request = old.clone();
        let weak = Arc::downgrade(&old);
        let reaper = std::thread::spawn(move || retire_when_unshared(old));
        std::thread::sleep(Duration::from_millis(30));
        assert!(weak.upgrade().is_some(), "kept while a request holds it");
        drop(request);
        reaper.join().expect("reaper");
        assert!(
            weak.upgrade().is_none(),
            "freed by the reaper, not the request"
        );
    }
}
