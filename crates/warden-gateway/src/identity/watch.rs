//! File watching by polling: each watched component names its files; when any of them changes
//! (modification time, size or presence), the component reloads. A reload that fails keeps the
//! component's previous state and is reported; the file is tried again when it changes again.
//!
//! The stamps are taken *before* a component reads its files, so a write that lands while a
//! reload is reading is seen as a change on the next check (write files atomically — write a
//! temporary file, then rename it — so a reload never reads half a file).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tracing::{info, warn};

/// What a file looked like: modification time, size and (on Unix) inode, so an atomic
/// replace is seen even within one tick of the file system's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &std::path::Path) -> Option<Stamp> {
    std::fs::metadata(path).ok().map(|m| Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        #[cfg(unix)]
        inode: std::os::unix::fs::MetadataExt::ino(&m),
        #[cfg(not(unix))]
        inode: 0,
    })
}

/// The stamps of `files` now: take them *before* a component first reads its files.
pub(crate) struct Stamps(Vec<Option<Stamp>>);

impl Stamps {
    pub(crate) fn take(files: &[PathBuf]) -> Self {
        Self(files.iter().map(|f| stamp(f)).collect())
    }
}

/// Reloads a component from its files; `Ok` carries a short summary for the log, `Err` every
/// problem found (the component keeps its previous state).
pub(crate) type ReloadFn = Box<dyn Fn() -> Result<String, Vec<String>> + Send + Sync>;

struct Watched {
    name: &'static str,
    files: Vec<PathBuf>,
    stamps: Mutex<Vec<Option<Stamp>>>,
    reload: ReloadFn,
}

/// The result of one check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Components that reloaded successfully.
    pub reloaded: Vec<&'static str>,
    /// Components whose new files were refused, with every problem.
    pub failed: Vec<(&'static str, Vec<String>)>,
}

impl ReloadReport {
    pub fn is_empty(&self) -> bool {
        self.reloaded.is_empty() && self.failed.is_empty()
    }
}

/// Every watched component of a gateway.
#[derive(Default)]
pub struct Reloader {
    items: Vec<Watched>,
}

impl Reloader {
    /// Watch `files`, stamped as `stamps` when the component last read them.
    pub(crate) fn watch(
        &mut self,
        name: &'static str,
        files: Vec<PathBuf>,
        stamps: Stamps,
        reload: ReloadFn,
    ) {
        self.items.push(Watched {
            name,
            files,
            stamps: Mutex::new(stamps.0),
            reload,
        });
    }

    /// Reload every component whose files changed since the last check (all of them when
    /// `force`). Blocking: reads files.
    pub fn check(&self, force: bool) -> ReloadReport {
        let mut report = ReloadReport::default();
        for w in &self.items {
            let now: Vec<Option<Stamp>> = w.files.iter().map(|f| stamp(f)).collect();
            {
                let mut last = w.stamps.lock();
                if !force && *last == now {
                    continue;
                }
                *last = now;
            }
            match (w.reload)() {
                Ok(summary) => {
                    info!(component = w.name, %summary, "Reloaded.");
                    report.reloaded.push(w.name);
                }
                Err(problems) => {
                    for p in &problems {
                        warn!(component = w.name, problem = %p, "Reload refused; the previous state is kept.");
                    }
                    report.failed.push((w.name, problems));
                }
            }
        }
        report
    }

    /// Check every `interval` until the returned task is aborted.
    pub(crate) fn spawn(self: Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let me = self.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || me.check(false)).await {
                    warn!(error = %e, "File check failed.");
                }
            }
        })
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn reloads_only_changed_files_and_reports_failures() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("f");
        std::fs::write(&path, "1").expect("write");
        let calls = Arc::new(AtomicUsize::new(0));
        let mut r = Reloader::default();
        let (c, p) = (calls.clone(), path.clone());
        r.watch(
            "thing",
            vec![path.clone()],
            Stamps::take(std::slice::from_ref(&path)),
            Box::new(move || {
                c.fetch_add(1, Ordering::SeqCst);
                let text = std::fs::read_to_string(&p).map_err(|e| vec![e.to_string()])?;
                if text == "bad" {
                    Err(vec!["bad content".into()])
                } else {
                    Ok(text)
                }
            }),
        );
        assert!(r.check(false).is_empty(), "nothing changed yet");
        assert_eq!(calls.load(Ordering::SeqCst), 0);

        std::fs::write(&path, "22").expect("write");
        assert_eq!(r.check(false).reloaded, vec!["thing"]);
        assert!(r.check(false).is_empty(), "a change is reloaded once");

        std::fs::write(&path, "bad").expect("write");
        let report = r.check(false);
        assert_eq!(
            report.failed,
            vec![("thing", vec!["bad content".to_string()])]
        );
        assert!(
            r.check(false).is_empty(),
            "a refused change is not retried until it changes"
        );

        std::fs::remove_file(&path).expect("rm");
        assert_eq!(
            r.check(false).failed.len(),
            1,
            "a vanished file is a change"
        );
        assert_eq!(r.check(true).failed.len(), 1, "force reloads everything");
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }
}
