//! Persistent sessions while their device is away: what MQTT's `clean_session = false` (3.1.1)
//! or a session expiry interval (5.0) asks a server to keep, as far as a gateway that
//! translates needs it — the session's subscriptions, and the QoS 1 commands sent to it while
//! it was disconnected, delivered when it comes back. Bounded: a session is kept for
//! `gateway.mqtt.session_expiry_s` at most, holds `max_queued_messages` commands (the oldest
//! dropped first), and at most `max_connections` sessions are kept at once (a session that
//! would pass that is not kept). Kept in memory: a gateway restart forgets them, as it
//! forgets its connections.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::rules;

/// A command waiting for its device.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Queued {
    pub topic: String,
    pub qos: u8,
    pub payload: Bytes,
}

/// A disconnected persistent session.
#[derive(Debug, Default)]
pub(crate) struct Parked {
    pub subscriptions: Vec<(String, u8)>,
    pub queue: VecDeque<Queued>,
    /// Commands dropped because the queue was full.
    pub dropped: u64,
    pub(crate) until: Option<Instant>,
}

/// The disconnected persistent sessions of a gateway, by identity and client id.
#[derive(Debug, Default)]
pub(crate) struct ParkedSessions {
    by_identity: HashMap<String, Vec<(String, Parked)>>,
    count: usize,
}

impl ParkedSessions {
    /// The parked session of `client_id`, taken out (`None` when there is none or it expired).
    pub fn take(&mut self, identity: &str, client_id: &str, now: Instant) -> Option<Parked> {
        let list = self.by_identity.get_mut(identity)?;
        let i = list.iter().position(|(c, _)| c == client_id)?;
        let (_, p) = list.swap_remove(i);
        if list.is_empty() {
            self.by_identity.remove(identity);
        }
        self.count -= 1;
        p.until.is_some_and(|u| u > now).then_some(p)
    }

    /// Keep `client_id`'s session for `ttl` with `subscriptions` (and what `queue` held);
    /// `false` when `max` sessions are kept already.
    pub fn park(
        &mut self,
        identity: &str,
        client_id: &str,
        mut parked: Parked,
        ttl: Duration,
        max: usize,
        now: Instant,
    ) -> bool {
        drop(self.take(identity, client_id, now));
        if self.count >= max {
            self.expire(now);
            if self.count >= max {
                return false;
            }
        }
        parked.until = Some(now + ttl);
        self.by_identity
            .entry(identity.to_string())
            .or_default()
            .push((client_id.to_string(), parked));
        self.count += 1;
        true
    }

    /// Queue a command on `topic` for every parked session of `identity` subscribed to it at
    /// QoS 1 (a QoS 0 command is for connected devices only); returns how many queued it.
    pub fn queue(
        &mut self,
        identity: &str,
        topic: &str,
        qos: u8,
        payload: &Bytes,
        max_queued: usize,
        now: Instant,
    ) -> usize {
        let Some(list) = self.by_identity.get_mut(identity) else {
            return 0;
        };
        let mut queued = 0;
        for (_, p) in list.iter_mut() {
            if p.until.is_none_or(|u| u <= now) || max_queued == 0 {
                continue;
            }
            let granted = p
                .subscriptions
                .iter()
                .filter(|(f, _)| rules::matches(topic, f))
                .map(|(_, q)| *q)
                .max();
            let Some(q) = granted.map(|g| g.min(qos)).filter(|q| *q >= 1) else {
                continue;
            };
            if p.queue.len() >= max_queued {
                p.queue.pop_front();
                p.dropped += 1;
            }
            p.queue.push_back(Queued {
                topic: topic.to_string(),
                qos: q,
                payload: payload.clone(),
            });
            queued += 1;
        }
        queued
    }

    /// Forget the sessions that expired.
    pub fn expire(&mut self, now: Instant) {
        let mut gone = 0;
        self.by_identity.retain(|_, list| {
            let before = list.len();
            list.retain(|(_, p)| p.until.is_some_and(|u| u > now));
            gone += before - list.len();
            !list.is_empty()
        });
        self.count -= gone;
    }

    /// Sessions kept.
    pub fn len(&self) -> usize {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(f: &str, q: u8) -> Parked {
        Parked {
            subscriptions: vec![(f.to_string(), q)],
            ..Parked::default()
        }
    }

    #[test]
    fn parked_sessions_queue_qos1_commands_until_they_expire() {
        let now = Instant::now();
        let mut p = ParkedSessions::default();
        let ttl = Duration::from_secs(60);
        assert!(p.park(
            "dev-1",
            "dev-1",
            subs("devices/dev-1/commands/#", 1),
            ttl,
            10,
            now
        ));
        assert!(p.park(
            "dev-1",
            "dev-1:b",
            subs("devices/dev-1/other", 1),
            ttl,
            10,
            now
        ));
        let body = Bytes::from_static(b"reboot");
        assert_eq!(
            p.queue("dev-1", "devices/dev-1/commands/reboot", 1, &body, 2, now),
            1
        );
        // QoS 0, or a subscription at QoS 0: not kept.
        assert_eq!(
            p.queue("dev-1", "devices/dev-1/commands/x", 0, &body, 2, now),
            0
        );
        assert_eq!(
            p.queue("dev-2", "devices/dev-1/commands/x", 1, &body, 2, now),
            0
        );
        // The oldest goes when the queue is full.
        for n in 0..2 {
            let b = Bytes::from(format!("n{n}"));
            p.queue("dev-1", "devices/dev-1/commands/c", 1, &b, 2, now);
        }
        let s = p.take("dev-1", "dev-1", now).expect("kept");
        assert_eq!(s.queue.len(), 2);
        assert_eq!(s.dropped, 1);
        assert_eq!(s.queue[0].payload, Bytes::from("n0"));
        assert_eq!(
            s.subscriptions,
            vec![("devices/dev-1/commands/#".into(), 1)]
        );
        assert!(p.take("dev-1", "dev-1", now).is_none(), "taken once");
        // Expired: gone.
        assert!(p.take("dev-1", "dev-1:b", now + ttl).is_none());
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn the_number_of_parked_sessions_is_bounded() {
        let now = Instant::now();
        let mut p = ParkedSessions::default();
        let short = Duration::from_secs(1);
        assert!(p.park("a", "a", Parked::default(), short, 2, now));
        assert!(p.park("b", "b", Parked::default(), Duration::from_secs(60), 2, now));
        assert!(!p.park("c", "c", Parked::default(), short, 2, now), "full");
        // Once one expired there is room again.
        let later = now + Duration::from_secs(2);
        assert!(p.park("c", "c", Parked::default(), short, 2, later));
        assert_eq!(p.len(), 2);
        // Parking the same client id again replaces it.
        assert!(p.park("c", "c", Parked::default(), short, 2, later));
        assert_eq!(p.len(), 2);
    }
}
