//! Per-key state indexed by dense key ids.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{DetectError, KeyId};

/// State per [`KeyId`], in a vector indexed by the id (ids are dense and reused).
#[derive(Debug, Clone)]
pub struct Keyed<S> {
    slots: Vec<Option<S>>,
    live: usize,
}

impl<S> Default for Keyed<S> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            live: 0,
        }
    }
}

impl<S> Keyed<S> {
    pub fn get(&self, key: KeyId) -> Option<&S> {
        self.slots.get(key as usize).and_then(Option::as_ref)
    }

    pub fn get_mut(&mut self, key: KeyId) -> Option<&mut S> {
        self.slots.get_mut(key as usize).and_then(Option::as_mut)
    }

    pub fn insert(&mut self, key: KeyId, state: S) {
        let i = key as usize;
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || None);
        }
        if self.slots[i].replace(state).is_none() {
            self.live += 1;
        }
    }

    pub fn remove(&mut self, key: KeyId) -> Option<S> {
        let s = self.slots.get_mut(key as usize).and_then(Option::take);
        if s.is_some() {
            self.live -= 1;
        }
        s
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Bytes of the slot vector (not of heap data the states own).
    pub fn slot_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Option<S>>()
    }

    pub fn iter(&self) -> impl Iterator<Item = &S> {
        self.slots.iter().flatten()
    }
}

impl<S: Default> Keyed<S> {
    pub fn get_or_default(&mut self, key: KeyId) -> &mut S {
        let i = key as usize;
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || None);
        }
        let slot = &mut self.slots[i];
        if slot.is_none() {
            self.live += 1;
        }
        slot.get_or_insert_with(S::default)
    }
}

impl<S: Serialize + DeserializeOwned> Keyed<S> {
    pub fn save(&self, key: KeyId) -> Option<serde_json::Value> {
        self.get(key).and_then(|s| serde_json::to_value(s).ok())
    }

    pub fn load(
        &mut self,
        detector: &str,
        key: KeyId,
        state: serde_json::Value,
    ) -> Result<(), DetectError> {
        let s = serde_json::from_value(state).map_err(|source| DetectError::State {
            detector: detector.to_string(),
            source,
        })?;
        self.insert(key, s);
        Ok(())
    }
}
