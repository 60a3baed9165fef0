//! Swapping a new pipeline into a running engine without losing what it learned: windows whose
//! config and features are unchanged keep their buckets and key ids, detectors whose config is
//! unchanged (on such a window) keep their state, and the decision policy keeps every subject
//! it knows (live quarantines, releases, offenses, evidence).

use warden_config::{ConfigErrors, PipelineConfig};

use super::Engine;

/// What a reload kept and what it started afresh.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Windows whose state was kept.
    pub windows_kept: Vec<String>,
    /// Windows new or changed (state starts empty).
    pub windows_reset: Vec<String>,
    /// Detectors whose state was kept.
    pub detectors_kept: Vec<String>,
    /// Detectors new or changed, or on a reset window (state starts empty).
    pub detectors_reset: Vec<String>,
}

impl std::fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        write!(
            f,
            "detectors kept: {}; reset: {}; windows kept: {}; reset: {}",
            list(&self.detectors_kept),
            list(&self.detectors_reset),
            list(&self.windows_kept),
            list(&self.windows_reset)
        )
    }
}

impl Engine {
    /// Swap in `pipeline` (validated). On error (a SQL feature that does not compile) the
    /// engine is unchanged.
    pub fn reconfigure(&mut self, pipeline: &PipelineConfig) -> Result<ReloadReport, ConfigErrors> {
        let mut next = Engine::new(pipeline)?;
        let mut report = ReloadReport::default();
        // The window holding the normal rates, and the feature, before the reload.
        let old_rates = self.rates.take().map(|m| {
            let w = &self.windows[m.window];
            (
                w.state.config.name.clone(),
                w.plan.names.get(m.feature).cloned(),
                m,
            )
        });
        let mut old = std::mem::take(&mut self.windows);
        for w in next.windows.iter_mut() {
            let name = w.state.config.name.clone();
            let same = old
                .iter()
                .position(|o| o.state.config == w.state.config && o.features == w.features);
            let Some(oi) = same else {
                report.windows_reset.push(name);
                report
                    .detectors_reset
                    .extend(w.detectors.iter().map(|d| d.config.name().to_string()));
                continue;
            };
            let mut o = old.swap_remove(oi);
            std::mem::swap(&mut w.state, &mut o.state);
            // Keys waiting for their provisional scoring (and their marks) stay with the
            // state they index.
            w.marked = std::mem::take(&mut o.marked);
            w.touched = std::mem::take(&mut o.touched);
            report.windows_kept.push(name);
            for d in w.detectors.iter_mut() {
                match o.detectors.iter().position(|od| od.config == d.config) {
                    Some(i) => {
                        let od = o.detectors.swap_remove(i);
                        d.detector = od.detector;
                        report.detectors_kept.push(d.config.name().to_string());
                    }
                    None => report.detectors_reset.push(d.config.name().to_string()),
                }
            }
            // A kept window whose detectors changed must still track peers if one needs them.
            if w.track_peers && !o.track_peers {
                w.state.peers = Default::default();
            }
        }
        std::mem::swap(&mut self.policy, &mut next.policy);
        self.policy.reconfigure(pipeline.decision.clone());
        self.windows = next.windows;
        self.rates = next.rates;
        if let (Some(n), Some((window, feature, o))) = (&mut self.rates, old_rates) {
            let w = &self.windows[n.window];
            if w.state.config.name == window
                && report.windows_kept.contains(&window)
                && w.plan.names.get(n.feature) == feature.as_ref()
            {
                n.levels = o.levels;
            }
        }
        // `source` applies after a restart (the runner reads batches with the old one, and
        // whether a batch is full is judged against it).
        let source = std::mem::take(&mut self.config.source);
        self.config = next.config;
        self.config.source = source;
        Ok(report)
    }
}
