//! Hot swap of ML models: each ML detector's file is checked for a change; a valid new model
//! is served from the next sample on, a bad one is refused and the old model keeps serving.

use super::Engine;
use crate::ml::ModelRefresh;

impl Engine {
    /// Check every ML detector's model file; returns what changed (nothing when no file did).
    /// Call it now and then (the processor does, every few seconds): it reads file metadata
    /// only, unless a file changed.
    pub fn refresh_models(&mut self) -> Vec<ModelRefresh> {
        let mut out = Vec::new();
        for d in self.windows.iter().flat_map(|w| w.detectors.iter()) {
            let Some(h) = &d.model else { continue };
            let detector = d.config.name().to_string();
            match h.refresh() {
                None => {}
                Some(Ok(sha256)) => {
                    tracing::info!(%detector, %sha256, "Model swapped in.");
                    out.push(ModelRefresh::Swapped { detector, sha256 });
                }
                Some(Err(e)) => {
                    tracing::warn!(%detector, error = %e, "Model file refused; the loaded model keeps serving.");
                    out.push(ModelRefresh::Refused {
                        detector,
                        error: e.to_string(),
                    });
                }
            }
        }
        out
    }

    /// The score histograms of the ML detectors' served models.
    pub fn model_scores(&self) -> Vec<crate::ml::ModelScores> {
        self.windows
            .iter()
            .flat_map(|w| w.detectors.iter())
            .filter_map(|d| {
                let h = d.model.as_ref()?;
                Some(crate::ml::ModelScores {
                    detector: d.config.name().to_string(),
                    model: h.kind().as_str(),
                    scores: h.scores().clone(),
                    handle: Some(h.clone()),
                })
            })
            .collect()
    }

    /// Whether the pipeline has ML detectors serving a model.
    pub fn has_models(&self) -> bool {
        self.windows
            .iter()
            .flat_map(|w| w.detectors.iter())
            .any(|d| d.model.is_some())
    }

    /// The name of key `id` of window `window`, while the key lives (ids are reused after a
    /// key is forgotten).
    pub fn key_name(&self, window: &str, id: warden_detect::KeyId) -> Option<String> {
        let w = self
            .windows
            .iter()
            .find(|w| w.state.config.name == window)?;
        w.state.key(id).map(|_| w.state.name(id).to_string())
    }
}
