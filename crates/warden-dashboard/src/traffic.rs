//! Traffic over time, from the events topic: per minute for the fleet (requests, bytes, errors,
//! refusals by reason) and for each recently active identity, client IP and tenant (requests,
//! bytes, errors, refusals, the routes and peers seen, its last [`LAST`] requests), over the
//! last [`WINDOW_MIN`] minutes.
//!
//! Bounded whatever the fleet: a subject costs a fixed [`SUBJECT_BYTES`] at most (fixed-size
//! minute ring, fixed-size lists of routes and peers with capped strings, a key of at most
//! 512 bytes), and each kind keeps at most [`MAX_SUBJECTS`] subjects: beyond that the least
//! recently active ones are forgotten (their pages then say that no recent traffic is held).
//! Recording an event is a few hash lookups under one mutex; for subjects already held, its
//! only allocation is the route label.

use std::collections::{BTreeMap, HashMap};

use parking_lot::Mutex;
use serde::Serialize;
use warden_event::{ANONYMOUS, Reason, RequestEvent, Subject, SubjectKind};

/// Minutes of history kept (fleet and subjects).
pub const WINDOW_MIN: usize = 60;
/// Subjects kept per kind (identities, client IPs, tenants).
pub const MAX_SUBJECTS: usize = 10_000;
/// Routes and peers (IPs of an identity or tenant, identities of an IP) kept per subject.
const RECENT: usize = 6;
/// Longest route or peer label kept (longer ones are cut).
const MAX_LABEL: usize = 64;
/// A subject's newest requests kept (time, `METHOD route` cut to [`LAST_LABEL`] bytes, status,
/// refusal reason, bytes), in a fixed array: no allocation per event.
pub const LAST: usize = 8;
const LAST_LABEL: usize = 30;
/// Longest subject value kept as a key (longer ones are cut, like labels).
const MAX_KEY: usize = 512;
/// Upper bound of the memory one subject takes, bytes: minute ring, reason blocks, routes and
/// peers at their longest, key at its longest, and the hash map's own overhead.
pub const SUBJECT_BYTES: usize = std::mem::size_of::<SubjectTraffic>()
    + 2 * RECENT * (MAX_LABEL + std::mem::size_of::<(Box<str>, u32, i64)>())
    + MAX_KEY
    + 64;
// A subject costs at most 4 KiB (3 912 bytes with today's layout).
const _: () = assert!(SUBJECT_BYTES <= 4096);
/// Minutes per block of the per-subject refusal reasons.
const REASON_BLOCK_MIN: u32 = 10;
const REASON_BLOCKS: usize = WINDOW_MIN / REASON_BLOCK_MIN as usize;
const REASONS: usize = Reason::ALL.len();
const MINUTE_NS: i64 = 60_000_000_000;

#[derive(Debug, Clone, Copy, Default)]
struct Minute {
    /// Minutes since the epoch this slot holds (0: empty).
    minute: u32,
    requests: u32,
    refused: u32,
    errors: u32,
    bytes: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct ReasonBlock {
    block: u32,
    counts: [u32; REASONS],
}

#[derive(Debug, Clone, Copy, Default)]
struct FleetMinute {
    minute: u32,
    requests: u64,
    errors: u64,
    bytes: u64,
    reasons: [u64; REASONS],
}

/// One of a subject's last requests.
#[derive(Debug, Clone, Copy, Default)]
struct LastRequest {
    ts: i64,
    bytes: u32,
    status: u16,
    reason: u8,
    len: u8,
    label: [u8; LAST_LABEL],
}

impl LastRequest {
    fn new(e: &RequestEvent, route: &str) -> Self {
        let cut_route = cut(route, LAST_LABEL);
        let mut label = [0u8; LAST_LABEL];
        label[..cut_route.len()].copy_from_slice(cut_route.as_bytes());
        Self {
            ts: e.ts,
            bytes: u32::try_from(e.bytes_in.saturating_add(e.bytes_out)).unwrap_or(u32::MAX),
            status: e.status,
            reason: u8::try_from(reason_index(e.reason)).unwrap_or(0),
            len: u8::try_from(cut_route.len()).unwrap_or(0),
            label,
        }
    }

    fn view(&self) -> RecentRequest {
        RecentRequest {
            t: self.ts,
            request: String::from_utf8_lossy(&self.label[..usize::from(self.len)]).into_owned(),
            status: self.status,
            reason: Reason::ALL
                .get(usize::from(self.reason))
                .map_or("none", |r| r.as_str())
                .to_string(),
            bytes: u64::from(self.bytes),
        }
    }
}

/// Routes or peers seen, with counts, most recent kept.
#[derive(Debug, Default)]
struct Recent(Vec<(Box<str>, u32, i64)>);

impl Recent {
    fn see(&mut self, label: &str, ts: i64) {
        let label = cut(label, MAX_LABEL);
        if let Some(e) = self.0.iter_mut().find(|e| &*e.0 == label) {
            e.1 = e.1.saturating_add(1);
            e.2 = e.2.max(ts);
            return;
        }
        let entry = (Box::from(label), 1, ts);
        if self.0.len() < RECENT {
            self.0.push(entry);
        } else if let Some(oldest) = self.0.iter_mut().min_by_key(|e| (e.2, e.1)) {
            *oldest = entry;
        }
    }

    fn view(&self) -> Vec<Seen> {
        let mut v: Vec<Seen> = self
            .0
            .iter()
            .map(|(label, n, ts)| Seen {
                value: label.to_string(),
                requests: u64::from(*n),
                last_seen: *ts,
            })
            .collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.last_seen));
        v
    }
}

/// The longest prefix of `s` of at most `max` bytes ending on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[derive(Debug)]
struct SubjectTraffic {
    minutes: [Minute; WINDOW_MIN],
    reasons: [ReasonBlock; REASON_BLOCKS],
    routes: Recent,
    peers: Recent,
    /// The newest requests by event time (`status` 0: an empty slot).
    last: [LastRequest; LAST],
    /// Order of the last event (for forgetting the least recently active).
    last_tick: u64,
    last_ts: i64,
}

impl Default for SubjectTraffic {
    fn default() -> Self {
        Self {
            minutes: [Minute::default(); WINDOW_MIN],
            reasons: [ReasonBlock::default(); REASON_BLOCKS],
            routes: Recent::default(),
            peers: Recent::default(),
            last: [LastRequest::default(); LAST],
            last_tick: 0,
            last_ts: 0,
        }
    }
}

impl SubjectTraffic {
    fn record(&mut self, minute: u32, e: &RequestEvent, route: &str, peer: &str, tick: u64) {
        let slot = &mut self.minutes[minute as usize % WINDOW_MIN];
        if slot.minute != minute {
            *slot = Minute {
                minute,
                ..Minute::default()
            };
        }
        slot.requests = slot.requests.saturating_add(1);
        slot.bytes = slot
            .bytes
            .saturating_add(e.bytes_in.saturating_add(e.bytes_out));
        if e.status >= 400 {
            slot.errors = slot.errors.saturating_add(1);
        }
        if refused(e.reason) {
            slot.refused = slot.refused.saturating_add(1);
            let block = minute / REASON_BLOCK_MIN;
            let b = &mut self.reasons[block as usize % REASON_BLOCKS];
            if b.block != block {
                *b = ReasonBlock {
                    block,
                    ..ReasonBlock::default()
                };
            }
            let i = reason_index(e.reason);
            b.counts[i] = b.counts[i].saturating_add(1);
        }
        // The newest by event time (events of a subject may arrive out of order): an empty
        // slot, else the oldest one if this event is newer.
        if let Some(slot) = self
            .last
            .iter_mut()
            .min_by_key(|r| (r.status != 0, r.ts))
            .filter(|r| r.status == 0 || r.ts < e.ts)
        {
            *slot = LastRequest::new(e, route);
        }
        self.routes.see(route, e.ts);
        if !peer.is_empty() {
            self.peers.see(peer, e.ts);
        }
        self.last_tick = tick;
        self.last_ts = self.last_ts.max(e.ts);
    }

    /// Requests in the minutes `from..=to`.
    fn requests_since(&self, from: u32) -> (u64, u64, u64) {
        self.minutes
            .iter()
            .filter(|m| m.minute >= from && m.minute != 0)
            .fold((0, 0, 0), |(r, f, b), m| {
                (
                    r + u64::from(m.requests),
                    f + u64::from(m.refused),
                    b + m.bytes,
                )
            })
    }
}

/// Whether a reason is a refusal (an upstream failure is an error, not a refusal).
fn refused(r: Reason) -> bool {
    !matches!(r, Reason::None | Reason::Upstream)
}

fn reason_index(r: Reason) -> usize {
    Reason::ALL.iter().position(|x| *x == r).unwrap_or(0)
}

#[derive(Debug)]
struct Inner {
    fleet: Box<[FleetMinute; WINDOW_MIN]>,
    identities: HashMap<Box<str>, SubjectTraffic>,
    ips: HashMap<Box<str>, SubjectTraffic>,
    tenants: HashMap<Box<str>, SubjectTraffic>,
    tick: u64,
    forgotten: u64,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            fleet: Box::new([FleetMinute::default(); WINDOW_MIN]),
            identities: HashMap::new(),
            ips: HashMap::new(),
            tenants: HashMap::new(),
            tick: 0,
            forgotten: 0,
        }
    }
}

/// The traffic store (see the module documentation).
#[derive(Debug)]
pub struct Traffic {
    inner: Mutex<Inner>,
    max_subjects: usize,
}

/// One minute of a subject's traffic.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct TrafficPoint {
    /// Start of the minute, nanoseconds since the Unix epoch.
    pub t: i64,
    pub requests: u64,
    pub bytes: u64,
    /// Answers with a status of 400 or more (refusals and upstream failures).
    pub errors: u64,
    /// Requests the gateway refused (any reason but `upstream`).
    pub refused: u64,
}

/// One minute of the fleet's traffic, refusals by reason.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct FleetPoint {
    pub t: i64,
    pub requests: u64,
    pub bytes: u64,
    pub errors: u64,
    /// Refusals by reason (`auth`, `rbac`, `quarantine`, `throttle`, `rate_limit`, `overload`,
    /// `invalid`, `path`, `route`), only those that happened.
    pub refused: BTreeMap<String, u64>,
}

/// A route or peer seen.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Seen {
    pub value: String,
    pub requests: u64,
    pub last_seen: i64,
}

/// One of a subject's last requests.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RecentRequest {
    /// Event time, nanoseconds since the Unix epoch.
    pub t: i64,
    /// `METHOD route` (cut to 30 bytes).
    pub request: String,
    pub status: u16,
    /// Why the gateway refused it (`none` when it was served).
    pub reason: String,
    /// Bytes in and out.
    pub bytes: u64,
}

/// A busy subject.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Talker {
    pub subject: Subject,
    pub requests: u64,
    pub refused: u64,
    pub bytes: u64,
}

/// A subject's traffic over the window (`GET /api/traffic/{kind}/{value}`).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SubjectTrafficView {
    pub subject: Subject,
    /// Whether the store holds traffic of this subject (it keeps the most recently active).
    pub tracked: bool,
    /// One point per minute, oldest first, the whole window (zeros where nothing happened).
    pub series: Vec<TrafficPoint>,
    /// Refusals by reason over the window.
    pub refusals: BTreeMap<String, u64>,
    /// Routes (`METHOD route`) seen, most recent first.
    pub routes: Vec<Seen>,
    /// Client IPs seen (for an identity or tenant), or identities (for an IP).
    pub peers: Vec<Seen>,
    /// The last requests (at most 8), newest first.
    pub recent: Vec<RecentRequest>,
    pub last_seen: Option<i64>,
}

/// The fleet's traffic over the window (`GET /api/traffic`).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct FleetTrafficView {
    pub window_s: u64,
    pub series: Vec<FleetPoint>,
    /// Identities with the most requests over the last ten minutes.
    pub top_identities: Vec<Talker>,
    /// Client IPs with the most requests over the last ten minutes.
    pub top_ips: Vec<Talker>,
    /// Subjects held now, per kind, and how many were forgotten to stay within the bound.
    pub tracked: BTreeMap<String, u64>,
    pub forgotten: u64,
}

/// Minutes since the epoch of `ts` (ns), 0 before it.
fn minute_of(ts: i64) -> u32 {
    u32::try_from(ts.max(0) / MINUTE_NS).unwrap_or(u32::MAX)
}

impl Traffic {
    /// A store holding at most `max_subjects` subjects per kind.
    pub fn new(max_subjects: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            max_subjects: max_subjects.max(1),
        }
    }

    /// Record one event at `now_ns` (events older than the window, or more than a minute in
    /// the future, are ignored).
    pub fn record(&self, e: &RequestEvent, now_ns: i64) {
        let now = minute_of(now_ns);
        let minute = minute_of(e.ts);
        if minute.saturating_add(WINDOW_MIN as u32) <= now || minute > now.saturating_add(1) {
            return;
        }
        // The route label, built once for the three subjects (the only allocation of an
        // event whose subjects are already held).
        let route = format!("{} {}", cut(&e.method, 8), cut(&e.route, MAX_LABEL));
        let mut g = self.inner.lock();
        let inner = &mut *g;
        inner.tick += 1;
        let tick = inner.tick;
        let f = &mut inner.fleet[minute as usize % WINDOW_MIN];
        if f.minute != minute {
            *f = FleetMinute {
                minute,
                ..FleetMinute::default()
            };
        }
        f.requests += 1;
        f.bytes = f
            .bytes
            .saturating_add(e.bytes_in.saturating_add(e.bytes_out));
        if e.status >= 400 {
            f.errors += 1;
        }
        if refused(e.reason) {
            f.reasons[reason_index(e.reason)] += 1;
        }
        let max = self.max_subjects;
        let identity = (e.identity != ANONYMOUS && !e.identity.is_empty()).then_some(&*e.identity);
        if let Some(id) = identity {
            let (t, n) = touch(&mut inner.identities, id, max);
            t.record(minute, e, &route, &e.client_ip, tick);
            inner.forgotten += n;
        }
        let (t, n) = touch(&mut inner.ips, &e.client_ip, max);
        t.record(minute, e, &route, identity.unwrap_or(""), tick);
        inner.forgotten += n;
        if !e.tenant.is_empty() {
            let (t, n) = touch(&mut inner.tenants, &e.tenant, max);
            t.record(minute, e, &route, &e.client_ip, tick);
            inner.forgotten += n;
        }
    }

    /// The fleet's series and its top talkers at `now_ns`.
    pub fn fleet(&self, now_ns: i64, top: usize) -> FleetTrafficView {
        let now = minute_of(now_ns);
        let first = now.saturating_sub(WINDOW_MIN as u32 - 1);
        let g = self.inner.lock();
        let series = (first..=now)
            .map(|m| {
                let f = g.fleet[m as usize % WINDOW_MIN];
                let held = f.minute == m;
                FleetPoint {
                    t: i64::from(m) * MINUTE_NS,
                    requests: if held { f.requests } else { 0 },
                    bytes: if held { f.bytes } else { 0 },
                    errors: if held { f.errors } else { 0 },
                    refused: if held {
                        reason_map(&f.reasons)
                    } else {
                        BTreeMap::new()
                    },
                }
            })
            .collect();
        let since = now.saturating_sub(9);
        let tracked = [
            ("identity", g.identities.len()),
            ("ip", g.ips.len()),
            ("tenant", g.tenants.len()),
        ]
        .into_iter()
        .map(|(k, n)| (k.to_string(), n as u64))
        .collect();
        FleetTrafficView {
            window_s: WINDOW_MIN as u64 * 60,
            series,
            top_identities: talkers(&g.identities, SubjectKind::Identity, since, top),
            top_ips: talkers(&g.ips, SubjectKind::Ip, since, top),
            tracked,
            forgotten: g.forgotten,
        }
    }

    /// One subject's traffic at `now_ns` (identities, IPs and tenants; other kinds are never
    /// tracked).
    pub fn subject(&self, subject: &Subject, now_ns: i64) -> SubjectTrafficView {
        let now = minute_of(now_ns);
        let first = now.saturating_sub(WINDOW_MIN as u32 - 1);
        let g = self.inner.lock();
        let map = match subject.kind {
            SubjectKind::Identity => Some(&g.identities),
            SubjectKind::Ip => Some(&g.ips),
            SubjectKind::Tenant => Some(&g.tenants),
            _ => None,
        };
        let held = map.and_then(|m| m.get(cut(&subject.value, MAX_KEY)));
        let series = (first..=now)
            .map(|m| {
                let slot = held
                    .map(|s| s.minutes[m as usize % WINDOW_MIN])
                    .filter(|s| s.minute == m)
                    .unwrap_or_default();
                TrafficPoint {
                    t: i64::from(m) * MINUTE_NS,
                    requests: u64::from(slot.requests),
                    bytes: slot.bytes,
                    errors: u64::from(slot.errors),
                    refused: u64::from(slot.refused),
                }
            })
            .collect();
        let mut reasons = [0u64; REASONS];
        if let Some(s) = held {
            let first_block = first / REASON_BLOCK_MIN;
            for b in s
                .reasons
                .iter()
                .filter(|b| b.block >= first_block && b.block != 0)
            {
                for (total, n) in reasons.iter_mut().zip(b.counts) {
                    *total += u64::from(n);
                }
            }
        }
        SubjectTrafficView {
            subject: subject.clone(),
            tracked: held.is_some(),
            series,
            refusals: reason_map(&reasons),
            routes: held.map(|s| s.routes.view()).unwrap_or_default(),
            peers: held.map(|s| s.peers.view()).unwrap_or_default(),
            recent: held.map(recent_view).unwrap_or_default(),
            last_seen: held.map(|s| s.last_ts),
        }
    }

    /// Subjects whose value contains `needle` (ASCII case-insensitive), busiest first, at most
    /// `limit`.
    pub fn search(&self, needle: &str, limit: usize) -> Vec<Talker> {
        let needle = needle.to_ascii_lowercase();
        let g = self.inner.lock();
        let mut hits: Vec<Talker> = [
            (SubjectKind::Identity, &g.identities),
            (SubjectKind::Ip, &g.ips),
            (SubjectKind::Tenant, &g.tenants),
        ]
        .into_iter()
        .flat_map(|(kind, map)| {
            map.iter()
                .filter(|(k, _)| k.to_ascii_lowercase().contains(&needle))
                .map(move |(k, s)| {
                    let (requests, refused, bytes) = s.requests_since(0);
                    Talker {
                        subject: Subject {
                            kind,
                            value: k.to_string(),
                        },
                        requests,
                        refused,
                        bytes,
                    }
                })
        })
        .collect();
        hits.sort_by(|a, b| {
            b.requests
                .cmp(&a.requests)
                .then_with(|| a.subject.cmp(&b.subject))
        });
        hits.truncate(limit);
        hits
    }
}

/// The entry of `key` in `map`, created when missing; when the map is full, the least recently
/// active sixteenth of it is forgotten first (amortised: one scan per `max / 16` new
/// subjects). Returns the entry and how many subjects were forgotten.
fn touch<'a>(
    map: &'a mut HashMap<Box<str>, SubjectTraffic>,
    key: &str,
    max: usize,
) -> (&'a mut SubjectTraffic, u64) {
    let key = cut(key, MAX_KEY);
    let mut forgotten = 0;
    if !map.contains_key(key) && map.len() >= max {
        let drop = (max / 16).max(1);
        let mut ticks: Vec<u64> = map.values().map(|s| s.last_tick).collect();
        let at = drop.min(ticks.len()) - 1;
        let (_, nth, _) = ticks.select_nth_unstable(at);
        let limit = *nth;
        let before = map.len();
        map.retain(|_, s| s.last_tick > limit);
        forgotten = (before - map.len()) as u64;
    }
    let entry = map.entry(Box::from(key)).or_default();
    (entry, forgotten)
}

/// A subject's last requests, newest first.
fn recent_view(s: &SubjectTraffic) -> Vec<RecentRequest> {
    let mut v: Vec<RecentRequest> = s
        .last
        .iter()
        .filter(|r| r.status != 0)
        .map(LastRequest::view)
        .collect();
    v.sort_by_key(|r| std::cmp::Reverse(r.t));
    v
}

fn reason_map<T: Copy + Into<u64>>(counts: &[T; REASONS]) -> BTreeMap<String, u64> {
    Reason::ALL
        .iter()
        .zip(counts)
        .filter(|(_, n)| (**n).into() > 0)
        .map(|(r, n)| (r.as_str().to_string(), (*n).into()))
        .collect()
}

fn talkers(
    map: &HashMap<Box<str>, SubjectTraffic>,
    kind: SubjectKind,
    since: u32,
    top: usize,
) -> Vec<Talker> {
    let mut best: Vec<(u64, u64, u64, &str)> = Vec::with_capacity(top + 1);
    for (k, s) in map {
        let (requests, refused, bytes) = s.requests_since(since);
        if requests == 0 {
            continue;
        }
        if best.len() < top || best.last().is_some_and(|b| b.0 < requests) {
            let at = best.partition_point(|b| b.0 >= requests);
            best.insert(at, (requests, refused, bytes, k));
            best.truncate(top);
        }
    }
    best.into_iter()
        .map(|(requests, refused, bytes, k)| Talker {
            subject: Subject {
                kind,
                value: k.to_string(),
            },
            requests,
            refused,
            bytes,
        })
        .collect()
}

#[cfg(test)]
#[path = "traffic_tests.rs"]
mod tests;
