//! The reloadable policy files (enforced and shadow RBAC policies, JSON Schemas of routes) as
//! one immutable snapshot. A request takes the snapshot once, at its start, so a reload never
//! changes the rules under a request in flight; a reload that fails keeps the old snapshot.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::Serialize;
use tracing::{info, warn};
use warden_config::{ConfigErrors, PathCase, RbacPolicy, WardenConfig};

use super::Policy;
use crate::validate::{self, RouteRules};

/// One consistent set of rules.
#[derive(Debug)]
pub struct Policies {
    /// Enforced policy (`None`: every authenticated request is allowed).
    pub enforced: Option<Policy>,
    /// Shadow policy: evaluated and counted, never enforced.
    pub shadow: Option<Policy>,
    /// Validation rules by route name.
    pub routes: HashMap<String, RouteRules>,
    /// Increases with every successful reload (0 at start).
    pub generation: u64,
}

/// What a reload changed.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    pub generation: u64,
    /// Files read.
    pub files: Vec<String>,
}

/// A request the shadow policy would have denied.
#[derive(Debug, Clone, Serialize)]
pub struct ShadowDenial {
    pub request_id: String,
    pub identity: String,
    pub method: String,
    pub path: String,
    pub reason: String,
}

/// Shadow-policy counters and the most recent would-be denials.
#[derive(Debug, Default)]
pub struct ShadowStats {
    /// Requests the shadow policy evaluated.
    pub evaluated: AtomicU64,
    /// Requests it would have denied.
    pub would_deny: AtomicU64,
    recent: Mutex<VecDeque<ShadowDenial>>,
}

/// Would-be denials kept for the admin API.
const RECENT_SHADOW: usize = 64;

impl ShadowStats {
    pub fn record(&self, d: ShadowDenial) {
        self.would_deny.fetch_add(1, Ordering::Relaxed);
        let mut r = self.recent.lock();
        if r.len() == RECENT_SHADOW {
            r.pop_front();
        }
        r.push_back(d);
    }

    pub fn recent(&self) -> Vec<ShadowDenial> {
        self.recent.lock().iter().cloned().collect()
    }
}

/// New rules read from a new config, not applied yet.
#[derive(Debug)]
pub(crate) struct Prepared {
    sources: Sources,
    policies: Policies,
    stamps: Vec<Stamp>,
}

/// Where the rules come from; kept to reload them.
#[derive(Debug, Clone)]
struct Sources {
    config: WardenConfig,
    case: PathCase,
}

impl Sources {
    fn files(&self) -> Vec<PathBuf> {
        let rbac = &self.config.rbac;
        rbac.policy
            .iter()
            .chain(rbac.shadow_policy.iter())
            .chain(
                self.config
                    .validation
                    .routes
                    .values()
                    .filter_map(|v| v.json_schema.as_ref()),
            )
            .map(PathBuf::from)
            .collect()
    }

    fn read(&self, generation: u64) -> Result<Policies, ConfigErrors> {
        let mut errs = Vec::new();
        let mut load = |p: &Option<String>| -> Option<Policy> {
            let path = p.as_deref()?;
            match RbacPolicy::load(Path::new(path)) {
                Ok(policy) => Some(Policy::compile(&policy, self.case)),
                Err(e) => {
                    errs.extend(e.0);
                    None
                }
            }
        };
        let enforced = load(&self.config.rbac.policy);
        let shadow = load(&self.config.rbac.shadow_policy);
        let routes = match validate::compile(&self.config) {
            Ok(r) => r,
            Err(e) => {
                errs.extend(e.0);
                HashMap::new()
            }
        };
        if !errs.is_empty() {
            return Err(ConfigErrors(errs));
        }
        Ok(Policies {
            enforced,
            shadow,
            routes,
            generation,
        })
    }
}

/// The current snapshot and how to reload it.
#[derive(Debug)]
pub struct PolicyStore {
    /// Replaced by a live reload of the config file (routes' validation, policy paths).
    sources: Mutex<Sources>,
    /// Read by every request without a lock.
    current: ArcSwap<Policies>,
    /// Serialises reloads (requests never wait on it).
    reloading: Mutex<Vec<Stamp>>,
    pub shadow_stats: ShadowStats,
}

impl PolicyStore {
    /// Read every policy file the config names; fails with every problem found.
    pub fn load(config: &WardenConfig) -> Result<Self, ConfigErrors> {
        let sources = Sources {
            config: config.clone(),
            case: config.paths.case,
        };
        let stamps = stamps(&sources.files());
        let policies = sources.read(0)?;
        Ok(Self {
            sources: Mutex::new(sources),
            current: ArcSwap::from_pointee(policies),
            reloading: Mutex::new(stamps),
            shadow_stats: ShadowStats::default(),
        })
    }

    /// The rules for one request.
    pub fn snapshot(&self) -> Arc<Policies> {
        self.current.load_full()
    }

    /// Read the policy files and validation settings of a new `config` without applying
    /// them: every problem is returned, and nothing changes until [`PolicyStore::commit`].
    pub(crate) fn prepare(&self, config: &WardenConfig) -> Result<Prepared, ConfigErrors> {
        let sources = Sources {
            config: config.clone(),
            case: config.paths.case,
        };
        let stamps = stamps(&sources.files());
        let policies = sources.read(self.current.load().generation + 1)?;
        Ok(Prepared {
            sources,
            policies,
            stamps,
        })
    }

    /// Apply what [`PolicyStore::prepare`] read.
    pub(crate) fn commit(&self, p: Prepared) {
        let mut stamps_now = self.reloading.lock();
        let generation = p.policies.generation;
        *self.sources.lock() = p.sources;
        self.current.store(Arc::new(p.policies));
        *stamps_now = p.stamps;
        info!(
            generation,
            "Validation settings and policy files applied from the config."
        );
    }

    /// Re-read every file; on any problem the current rules stay and the problems are returned.
    pub fn reload(&self) -> Result<ReloadReport, ConfigErrors> {
        let mut stamps_now = self.reloading.lock();
        let sources = self.sources.lock().clone();
        let files = sources.files();
        let new_stamps = stamps(&files);
        let generation = self.current.load().generation + 1;
        let policies = sources.read(generation)?;
        self.current.store(Arc::new(policies));
        *stamps_now = new_stamps;
        info!(generation, "Policy files reloaded.");
        Ok(ReloadReport {
            generation,
            files: files.iter().map(|p| p.display().to_string()).collect(),
        })
    }

    /// Reload when a file's modification time or presence changed since the last load.
    pub fn reload_if_changed(&self) -> Option<Result<ReloadReport, ConfigErrors>> {
        let files = self.sources.lock().files();
        if stamps(&files) == *self.reloading.lock() {
            return None;
        }
        Some(self.reload())
    }

    /// Check the files every `interval` and reload them when they change.
    pub fn watch(self: Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let store = self.clone();
                let result = tokio::task::spawn_blocking(move || store.reload_if_changed()).await;
                if let Ok(Some(Err(e))) = result {
                    warn!(problems = %e, "Changed policy files are invalid; the previous rules stay.");
                }
            }
        })
    }
}

/// A file, with its modification time and length when it exists.
type Stamp = (PathBuf, Option<(SystemTime, u64)>);

fn stamps(files: &[PathBuf]) -> Vec<Stamp> {
    files
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())));
            (p.clone(), meta)
        })
        .collect()
}
