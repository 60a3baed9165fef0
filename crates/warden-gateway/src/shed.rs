//! Load shedding: at most `limits.max_in_flight` requests in the gateway and
//! `limits.routes.X.max_in_flight` on route X at once; one more is answered 503 at once instead
//! of queueing in front of a backend that is already saturated. A slot is held until the
//! response body has been sent (or dropped).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use warden_config::LimitsConfig;

/// One counter and its limit.
#[derive(Debug)]
struct Gate {
    in_flight: AtomicUsize,
    /// Changed in place by a live reload, so requests in flight stay counted.
    max: AtomicUsize,
}

/// A held slot; released on drop.
#[derive(Debug)]
pub struct Slot(Arc<Gate>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Gate {
    fn enter(self: &Arc<Self>) -> Option<Slot> {
        let n = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if n >= self.max.load(Ordering::Relaxed) {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(self.clone()))
    }
}

/// The configured concurrency limits.
#[derive(Debug, Default)]
pub struct Shedder {
    global: Option<Arc<Gate>>,
    routes: HashMap<String, Arc<Gate>>,
}

/// The request was shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shed;

impl Shedder {
    pub fn new(c: &LimitsConfig) -> Self {
        Self::carry_over(c, &Self::default())
    }

    /// The limits of `c`, keeping the counters of `previous` for every gate that still
    /// exists (its maximum updated in place): a live reload neither forgets the requests in
    /// flight nor lets a burst in.
    pub fn carry_over(c: &LimitsConfig, previous: &Shedder) -> Self {
        let gate = |old: Option<&Arc<Gate>>, max: usize| match old {
            Some(g) => {
                g.max.store(max, Ordering::Relaxed);
                g.clone()
            }
            None => Arc::new(Gate {
                in_flight: AtomicUsize::new(0),
                max: AtomicUsize::new(max),
            }),
        };
        Self {
            global: (c.max_in_flight > 0).then(|| gate(previous.global.as_ref(), c.max_in_flight)),
            routes: c
                .routes
                .iter()
                .map(|(name, r)| {
                    (
                        name.clone(),
                        gate(previous.routes.get(name), r.max_in_flight),
                    )
                })
                .collect(),
        }
    }

    /// Enter the gateway (`Ok(None)`: no global limit).
    pub fn enter_global(&self) -> Result<Option<Slot>, Shed> {
        match &self.global {
            None => Ok(None),
            Some(g) => g.enter().map(Some).ok_or(Shed),
        }
    }

    /// Enter a route (`Ok(None)`: the route has no limit).
    pub fn enter_route(&self, route: &str) -> Result<Option<Slot>, Shed> {
        match self.routes.get(route) {
            None => Ok(None),
            Some(g) => g.enter().map(Some).ok_or(Shed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_released_on_drop() {
        let mut c = warden_config::WardenConfig::default().limits;
        c.max_in_flight = 2;
        c.routes
            .insert("r".into(), warden_config::RouteLimits { max_in_flight: 1 });
        let s = Shedder::new(&c);
        let a = s.enter_global().expect("first");
        let b = s.enter_global().expect("second");
        assert!(a.is_some() && b.is_some());
        assert_eq!(s.enter_global().err(), Some(Shed));
        drop(a);
        assert!(s.enter_global().is_ok(), "released");
        let r = s.enter_route("r").expect("route slot");
        assert_eq!(s.enter_route("r").err(), Some(Shed));
        assert!(matches!(s.enter_route("other"), Ok(None)));
        drop(r);
        assert!(matches!(s.enter_route("r"), Ok(Some(_))));
    }

    #[test]
    fn a_reload_keeps_the_requests_in_flight_counted() {
        let mut c = warden_config::WardenConfig::default().limits;
        c.max_in_flight = 2;
        let s = Shedder::new(&c);
        let held = s.enter_global().expect("first");
        c.max_in_flight = 1;
        let reloaded = Shedder::carry_over(&c, &s);
        assert_eq!(
            reloaded.enter_global().err(),
            Some(Shed),
            "the held slot counts"
        );
        drop(held);
        assert!(matches!(reloaded.enter_global(), Ok(Some(_))));
    }
}
