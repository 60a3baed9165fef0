//! Rate limits: GCRA per identity, identity × route, tenant, client IP (unauthenticated requests
//! only) and the whole gateway, each optional, plus the reduced rate of subjects under a
//! `throttle` decision. A request is counted against every limit that applies to it, in that
//! order; if one refuses it, what the earlier ones counted is given back, so a refused request
//! costs nothing. Each keyed limit has its own bounded table ([`gcra`]).

pub mod gcra;

use std::collections::HashMap;
use std::fmt::Debug;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use warden_config::{KeyedRate, LimitsConfig, Rate};
use warden_event::{Subject, ThrottleLimit};

use gcra::{GcraTable, Outcome, Params};

/// Monotonic time in nanoseconds, injected so tests control it.
pub trait Clock: Send + Sync + Debug {
    fn now_ns(&self) -> u64;
}

/// The real clock: nanoseconds since it was made.
#[derive(Debug)]
pub struct MonotonicClock(Instant);

impl Default for MonotonicClock {
    fn default() -> Self {
        Self(Instant::now())
    }
}

impl Clock for MonotonicClock {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told to (tests, benches).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn set(&self, ns: u64) {
        self.0.store(ns, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Which limit refused a request (logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Global,
    Ip,
    Tenant,
    Identity,
    IdentityRoute,
    /// A `throttle` decision on the subject.
    Decision,
}

/// The state of the tightest limit, for the `RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Requests allowed at once (the burst).
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the quota is whole again (rounded up).
    pub reset_s: u64,
}

/// A refused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub scope: Scope,
    pub quota: Quota,
    /// Seconds until a request would pass (rounded up, at least 1).
    pub retry_after_s: u64,
}

/// What a request is counted as.
#[derive(Debug, Clone, Copy)]
pub struct LimitKey<'a> {
    /// `None` for anonymous requests (then the IP limit applies).
    pub identity: Option<&'a str>,
    pub tenant: &'a str,
    pub device_type: &'a str,
    pub route: &'a str,
    pub ip: IpAddr,
    /// The subject of a live `throttle` decision, if any, and the decision's own limit.
    pub throttled: Option<(&'a Subject, Option<ThrottleLimit>)>,
}

#[derive(Debug)]
struct Single {
    /// Shared with the limits a live reload builds, so buckets survive it.
    table: Arc<GcraTable>,
    params: Params,
}

impl Single {
    /// The sustained rate of `params`, requests per second.
    fn params_rate(&self) -> f64 {
        1e9 / self.params.interval_ns.max(1) as f64
    }
}

#[derive(Debug)]
struct Keyed {
    table: Arc<GcraTable>,
    base: Params,
    device_types: HashMap<String, Params>,
    routes: HashMap<String, Params>,
}

impl Keyed {
    fn new(r: &KeyedRate, table: Arc<GcraTable>) -> Self {
        let map = |m: &std::collections::BTreeMap<String, Rate>| {
            m.iter()
                .map(|(k, r)| (k.clone(), Params::new(*r)))
                .collect()
        };
        Self {
            table,
            base: Params::new(r.base()),
            device_types: map(&r.device_types),
            routes: map(&r.routes),
        }
    }

    fn params(&self, device_type: &str, route: &str) -> Params {
        self.routes
            .get(route)
            .or_else(|| self.device_types.get(device_type))
            .copied()
            .unwrap_or(self.base)
    }
}

/// One limiter table's occupancy (see [`RateLimits::stats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimiterStats {
    pub scope: &'static str,
    /// Keys with a slot.
    pub tracked: usize,
    /// Of those, keys whose bucket is not full (they are being limited or were lately).
    pub active: usize,
    pub capacity: usize,
    /// Keys with a bucket not full yet that lost their slot to a new key.
    pub evictions: u64,
    pub bytes: usize,
}

/// Every configured limit.
#[derive(Debug)]
pub struct RateLimits {
    global: Option<Single>,
    ip: Option<Single>,
    tenant: Option<Single>,
    identity: Option<Keyed>,
    identity_route: Option<Keyed>,
    throttled: Single,
    clock: Arc<dyn Clock>,
    /// Capacity of the keyed tables (`limits.max_keys`).
    max_keys: usize,
}

/// Limits a request is counted against at most.
const MAX_APPLIED: usize = 6;

impl RateLimits {
    pub fn new(c: &LimitsConfig, clock: Arc<dyn Clock>) -> Self {
        Self::build(c, clock, None)
    }

    /// The limits of `c`, keeping the tables (every client's bucket) of `previous` for each
    /// kind of limit configured in both, with the same `max_keys`: a live reload does not
    /// reset anyone's buckets, so a flooder gains nothing by it, and a changed rate applies
    /// to the state already there.
    pub fn carry_over(c: &LimitsConfig, previous: &RateLimits) -> Self {
        Self::build(c, previous.clock.clone(), Some(previous))
    }

    fn build(c: &LimitsConfig, clock: Arc<dyn Clock>, previous: Option<&RateLimits>) -> Self {
        let same = previous.filter(|p| p.max_keys == c.max_keys);
        let table = |old: Option<&Arc<GcraTable>>, keys: usize| {
            old.cloned()
                .unwrap_or_else(|| Arc::new(GcraTable::new(keys)))
        };
        // The global table has one key whatever `max_keys` is.
        let old_global = previous.and_then(|p| p.global.as_ref()).map(|s| &s.table);
        let single = |r: Option<Rate>, old: Option<&Arc<GcraTable>>, keys: usize| {
            r.map(|r| Single {
                table: table(old, keys),
                params: Params::new(r),
            })
        };
        let keyed = |r: Option<&KeyedRate>, old: Option<&Keyed>| {
            r.map(|r| Keyed::new(r, table(old.map(|k| &k.table), c.max_keys)))
        };
        Self {
            global: single(c.global, old_global, 1),
            ip: single(
                c.ip,
                same.and_then(|p| p.ip.as_ref()).map(|s| &s.table),
                c.max_keys,
            ),
            tenant: single(
                c.tenant,
                same.and_then(|p| p.tenant.as_ref()).map(|s| &s.table),
                c.max_keys,
            ),
            identity: keyed(c.identity.as_ref(), same.and_then(|p| p.identity.as_ref())),
            identity_route: keyed(
                c.identity_route.as_ref(),
                same.and_then(|p| p.identity_route.as_ref()),
            ),
            throttled: Single {
                table: table(same.map(|p| &p.throttled.table), c.max_keys),
                params: Params::new(c.throttled),
            },
            clock,
            max_keys: c.max_keys,
        }
    }

    /// Bytes of limiter state allocated (all tables).
    pub fn memory_bytes(&self) -> usize {
        [&self.global, &self.ip, &self.tenant]
            .into_iter()
            .flatten()
            .map(|s| s.table.memory_bytes())
            .chain(
                [&self.identity, &self.identity_route]
                    .into_iter()
                    .flatten()
                    .map(|k| k.table.memory_bytes()),
            )
            .sum::<usize>()
            + self.throttled.table.memory_bytes()
    }

    /// Every table's occupancy, for metrics: per limit configured (`global`, `ip`,
    /// `tenant`, `identity`, `identity_route`, `throttled`).
    pub fn stats(&self) -> Vec<LimiterStats> {
        let now = self.clock.now_ns();
        let one = |scope: &'static str, t: &GcraTable| {
            let (tracked, active) = t.occupancy(now);
            LimiterStats {
                scope,
                tracked,
                active,
                capacity: t.capacity(),
                evictions: t.evictions(),
                bytes: t.memory_bytes(),
            }
        };
        let mut out = Vec::new();
        for (scope, s) in [
            ("global", &self.global),
            ("ip", &self.ip),
            ("tenant", &self.tenant),
        ] {
            if let Some(s) = s {
                out.push(one(scope, &s.table));
            }
        }
        for (scope, k) in [
            ("identity", &self.identity),
            ("identity_route", &self.identity_route),
        ] {
            if let Some(k) = k {
                out.push(one(scope, &k.table));
            }
        }
        out.push(one("throttled", &self.throttled.table));
        out
    }

    /// Count a request whose credentials were refused against the global and client-IP limits
    /// (so guessing keys is throttled like any anonymous traffic).
    pub fn check_unauthenticated(&self, ip: IpAddr) -> Result<(), Limited> {
        if self.global.is_none() && self.ip.is_none() {
            return Ok(());
        }
        self.check(&LimitKey {
            identity: None,
            tenant: "",
            device_type: "",
            route: "",
            ip,
            throttled: None,
        })
        .map(|_| ())
    }

    /// Count the request against every limit that applies. `Ok(None)`: no limit applies.
    pub fn check(&self, k: &LimitKey<'_>) -> Result<Option<Quota>, Limited> {
        let mut applied: [Option<(&GcraTable, u64, Params, Scope)>; MAX_APPLIED] =
            [None; MAX_APPLIED];
        let mut n = 0;
        if let Some(g) = &self.global {
            applied[n] = Some((&g.table, 1, g.params, Scope::Global));
            n += 1;
        }
        match k.identity {
            None => {
                if let Some(l) = &self.ip {
                    applied[n] = Some((&l.table, l.table.hash(k.ip), l.params, Scope::Ip));
                    n += 1;
                }
            }
            Some(id) => {
                if let Some(l) = &self.tenant
                    && !k.tenant.is_empty()
                {
                    applied[n] = Some((&l.table, l.table.hash(k.tenant), l.params, Scope::Tenant));
                    n += 1;
                }
                if let Some(l) = &self.identity {
                    let p = l.params(k.device_type, "");
                    applied[n] = Some((&l.table, l.table.hash(id), p, Scope::Identity));
                    n += 1;
                }
                if let Some(l) = &self.identity_route {
                    let p = l.params(k.device_type, k.route);
                    let key = l.table.hash((id, k.route));
                    applied[n] = Some((&l.table, key, p, Scope::IdentityRoute));
                    n += 1;
                }
            }
        }
        if let Some((s, limit)) = k.throttled {
            let t = &self.throttled;
            let key = t.table.hash((s.kind.as_str(), s.value.as_str()));
            let params = limit.map_or(t.params, |l| {
                Params::new(Rate {
                    rate_per_s: if l.per_s.is_finite() && l.per_s > 0.0 {
                        l.per_s
                    } else {
                        t.params_rate()
                    },
                    burst: l.burst,
                })
            });
            applied[n] = Some((&t.table, key, params, Scope::Decision));
            n += 1;
        }
        if n == 0 {
            return Ok(None);
        }
        let now = self.clock.now_ns();
        let mut tightest: Option<Quota> = None;
        for i in 0..n {
            let Some((table, key, p, scope)) = applied[i] else {
                continue;
            };
            match table.acquire(key, p, now) {
                Outcome::Allowed {
                    remaining,
                    reset_ns,
                } => {
                    let q = Quota {
                        limit: p.burst,
                        remaining,
                        reset_s: ceil_s(reset_ns),
                    };
                    if tightest.is_none_or(|t| q.remaining < t.remaining) {
                        tightest = Some(q);
                    }
                }
                Outcome::Limited {
                    retry_after_ns,
                    reset_ns,
                } => {
                    for (t, key, p, _) in applied[..i].iter().flatten() {
                        t.refund(*key, *p, now);
                    }
                    return Err(Limited {
                        scope,
                        quota: Quota {
                            limit: p.burst,
                            remaining: 0,
                            reset_s: ceil_s(reset_ns),
                        },
                        retry_after_s: ceil_s(retry_after_ns).max(1),
                    });
                }
            }
        }
        Ok(tightest)
    }
}

fn ceil_s(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000)
}

#[cfg(test)]
mod tests;
