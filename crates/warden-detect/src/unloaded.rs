//! Stand-in for a model-backed detector (`kmeans`, `gmm`, `one_class_svm`,
//! `isolation_forest`) where no model is loaded: the stream engine builds those itself with
//! their model file (`warden-stream`'s `ml` module); a series backtest has no model to load.
//! Never fires, scores NaN.

use crate::{DetectError, Detector, Firing, KeyId, Sample};

pub struct Unloaded {
    name: String,
}

impl Unloaded {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
        }
    }
}

impl Detector for Unloaded {
    fn name(&self) -> &str {
        &self.name
    }
    fn observe(&mut self, _sample: &Sample) -> Option<Firing> {
        None
    }
    fn peek(&self, _sample: &Sample) -> Option<Firing> {
        None
    }
    fn score(&self, _sample: &Sample) -> f64 {
        f64::NAN
    }
    fn forget(&mut self, _key: KeyId) {}
    fn len(&self) -> usize {
        0
    }
    fn state_bytes(&self) -> usize {
        0
    }
    fn save_key(&self, _key: KeyId) -> Option<serde_json::Value> {
        None
    }
    fn load_key(&mut self, _key: KeyId, _state: serde_json::Value) -> Result<(), DetectError> {
        Ok(())
    }
}
