//! Checkpointing: the state of chosen keys (window buckets and every detector's per-key state)
//! as plain serialisable data, and restoring it into an engine running the same pipeline.
//!
//! This is the hook for durable processors: snapshot the keys of a partition (the bus key of
//! an event is its identity, or its client IP when anonymous) before committing its offsets,
//! restore them when the partition is assigned. Policy state is not included: it is rebuilt
//! from the compacted decisions topic at start.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use warden_detect::DetectError;

use super::Engine;
use crate::window::KeyState;

/// The state of some keys of an engine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineSnapshot {
    /// Pipeline the state belongs to.
    pub pipeline: String,
    pub watermark: Option<i64>,
    /// Per window name: last complete slot sampled, and the keys.
    pub windows: BTreeMap<String, WindowSnapshot>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowSnapshot {
    pub sampled_through: Option<i64>,
    pub keys: Vec<KeySnapshot>,
}

/// One key of one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeySnapshot {
    pub state: KeyState,
    /// Per detector name, its saved state for this key.
    pub detectors: BTreeMap<String, serde_json::Value>,
}

impl Engine {
    /// The state of every key `include(window, key)` selects.
    pub fn snapshot(&self, include: impl Fn(&str, &str) -> bool) -> EngineSnapshot {
        let mut snap = EngineSnapshot {
            pipeline: self.config.name.clone(),
            watermark: self.watermark,
            windows: BTreeMap::new(),
        };
        let mut ids = Vec::new();
        for w in &self.windows {
            let name = &w.state.config.name;
            w.state.live(&mut ids);
            let keys = ids
                .iter()
                .filter_map(|id| w.state.key(*id).map(|k| (*id, k)))
                .filter(|(_, k)| include(name, &k.name))
                .map(|(id, k)| KeySnapshot {
                    state: k.clone(),
                    detectors: w
                        .detectors
                        .iter()
                        .filter_map(|d| {
                            d.detector
                                .save_key(id)
                                .map(|v| (d.config.name().to_string(), v))
                        })
                        .collect(),
                })
                .collect();
            snap.windows.insert(
                name.clone(),
                WindowSnapshot {
                    sampled_through: w.state.sampled_through,
                    keys,
                },
            );
        }
        snap
    }

    /// Restore keys from a snapshot (of the same pipeline); windows and detectors the
    /// pipeline no longer has are skipped.
    pub fn restore(&mut self, snap: EngineSnapshot) -> Result<(), DetectError> {
        self.watermark = self.watermark.max(snap.watermark);
        self.newest = self.newest.max(snap.watermark);
        for (name, ws) in snap.windows {
            let Some(w) = self
                .windows
                .iter_mut()
                .find(|w| w.state.config.name == name)
            else {
                continue;
            };
            w.state.sampled_through = w.state.sampled_through.max(ws.sampled_through);
            for k in ws.keys {
                let id = w.state.restore_key(k.state);
                for d in w.detectors.iter_mut() {
                    if let Some(v) = k.detectors.get(d.config.name()) {
                        d.detector.load_key(id, v.clone())?;
                    }
                }
            }
        }
        Ok(())
    }
}
