//! Semantic checks of a scenario; every problem is reported with its key path.

use std::collections::{BTreeMap, HashSet};

use warden_config::ConfigError;

use super::{AttackConfig, ScenarioConfig};
use crate::DeviceType;

/// Longest run a scenario may ask for: a week.
const MAX_DURATION_S: f64 = 7.0 * 86_400.0;
/// Largest fleet.
const MAX_DEVICES: usize = 1_000_000;
/// Highest rate of one attack, requests per second.
const MAX_RATE: f64 = 100_000.0;
/// Most rows an export or a history request may ask for.
const MAX_LIMIT: u32 = 200_000;

pub(super) fn scenario(s: &ScenarioConfig) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    let mut err = |key: String, reason: String| errs.push(ConfigError::new(key, reason));
    if s.name.is_empty()
        || !s
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        err(
            "name".into(),
            "must be non-empty letters, digits, `_` or `-`".into(),
        );
    }
    if s.description.trim().is_empty() {
        err("description".into(), "must not be empty".into());
    }
    let duration = s.duration_s;
    if !(duration.is_finite() && duration > 0.0 && duration <= MAX_DURATION_S) {
        err(
            "duration_s".into(),
            format!("must be more than 0 and at most {MAX_DURATION_S} (a week)"),
        );
    }
    let f = &s.fleet;
    if f.devices == 0 || f.devices > MAX_DEVICES {
        err(
            "fleet.devices".into(),
            format!("must be from 1 to {MAX_DEVICES}"),
        );
    }
    let mut total = 0.0;
    for t in DeviceType::ALL {
        let w = f.mix.weight(t);
        if !(w.is_finite() && w >= 0.0) {
            err(
                format!("fleet.mix.{t}"),
                "must be a weight of 0 or more".into(),
            );
        } else {
            total += w;
        }
    }
    if total <= 0.0 {
        err(
            "fleet.mix".into(),
            "at least one device type needs a positive weight".into(),
        );
    }
    if f.tenants == 0 || f.tenants > 10_000 {
        err("fleet.tenants".into(), "must be from 1 to 10000".into());
    }
    if !(f.start_hour.is_finite() && (0.0..24.0).contains(&f.start_hour)) {
        err(
            "fleet.start_hour".into(),
            "must be an hour of the day, at least 0 and below 24".into(),
        );
    }
    if !(f.period_scale.is_finite() && (0.05..=1000.0).contains(&f.period_scale)) {
        err(
            "fleet.period_scale".into(),
            "must be from 0.05 to 1000".into(),
        );
    }
    if let Some(r) = &f.firmware_rollout {
        if !(r.start_s.is_finite() && r.start_s >= 0.0 && r.start_s < duration) {
            err(
                "fleet.firmware_rollout.start_s".into(),
                "must be within the run (0 ≤ start_s < duration_s)".into(),
            );
        }
        if !(r.spread_s.is_finite() && r.spread_s >= 0.0) {
            err(
                "fleet.firmware_rollout.spread_s".into(),
                "must be 0 or more".into(),
            );
        }
        if !(r.fraction > 0.0 && r.fraction <= 1.0) {
            err(
                "fleet.firmware_rollout.fraction".into(),
                "must be in (0, 1]".into(),
            );
        }
        if r.chunks == 0 || r.chunks > 1000 {
            err(
                "fleet.firmware_rollout.chunks".into(),
                "must be from 1 to 1000".into(),
            );
        }
    }
    if let Some(o) = &f.outage {
        if !(o.start_s.is_finite() && o.start_s >= 0.0 && o.start_s < duration) {
            err(
                "fleet.outage.start_s".into(),
                "must be within the run (0 ≤ start_s < duration_s)".into(),
            );
        }
        if !(o.duration_s.is_finite() && o.duration_s > 0.0 && o.start_s + o.duration_s <= duration)
        {
            err(
                "fleet.outage.duration_s".into(),
                "must be more than 0 and end within the run".into(),
            );
        }
        if o.max_backlog > 1000 {
            err(
                "fleet.outage.max_backlog".into(),
                "must be at most 1000".into(),
            );
        }
    }

    if let Some(c) = &f.churn {
        for (k, v) in [
            ("joining", c.joining),
            ("leaving", c.leaving),
            ("offline", c.offline),
        ] {
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                err(format!("fleet.churn.{k}"), "must be from 0 to 1".into());
            }
        }
        if c.joining + c.leaving + c.offline > 1.0 {
            err(
                "fleet.churn".into(),
                "joining + leaving + offline must be at most 1 (a device is at most one of them)"
                    .into(),
            );
        }
        if !(c.offline_s.is_finite() && c.offline_s > 0.0 && c.offline_s < duration) {
            err(
                "fleet.churn.offline_s".into(),
                "must be more than 0 and shorter than the run".into(),
            );
        }
        if c.max_backlog > 1000 {
            err(
                "fleet.churn.max_backlog".into(),
                "must be at most 1000".into(),
            );
        }
    }

    let counts: BTreeMap<DeviceType, usize> = f.mix.counts(f.devices).into_iter().collect();
    let mut needed: BTreeMap<DeviceType, usize> = BTreeMap::new();
    let mut names = HashSet::new();
    for (i, a) in s.attack.iter().enumerate() {
        let at = |k: &str| format!("attack[{i}].{k}");
        if a.name().trim().is_empty() {
            err(at("name"), "must not be empty".into());
        } else if !names.insert(a.name()) {
            err(at("name"), format!("duplicate attack name `{}`", a.name()));
        }
        let (start, end) = a.window();
        if !(start.is_finite() && start >= 0.0) {
            err(at("start_s"), "must be 0 or more".into());
        }
        if !(end.is_finite() && end > start && end <= duration) {
            err(
                at("end_s"),
                format!("must be after start_s and at most duration_s ({duration})"),
            );
        }
        let e = a.expect();
        match (e.detected, e.reason.as_deref().map(str::trim)) {
            (false, None | Some("")) => err(
                at("expect.reason"),
                "required when detected = false: say which detector is missing".into(),
            ),
            (true, Some(_)) => err(
                at("expect.reason"),
                "only for detected = false (remove it when flipping to true)".into(),
            ),
            _ => {}
        }
        if e.quarantined && !e.detected {
            err(at("expect.quarantined"), "only for detected = true".into());
        }
        if let Some(r) = e.min_recall {
            if !e.detected {
                err(at("expect.min_recall"), "only for detected = true".into());
            } else if !(r > 0.0 && r <= 1.0) {
                err(at("expect.min_recall"), "must be in (0, 1]".into());
            }
        }
        let mut need = |t: DeviceType, n: usize, key: &str, errs: &mut Vec<(String, String)>| {
            if n == 0 {
                errs.push((at(key), "must be at least 1".into()));
            }
            *needed.entry(t).or_default() += n;
        };
        let mut extra: Vec<(String, String)> = Vec::new();
        match a {
            AttackConfig::BotnetFlood(c) => {
                rate_check(&mut extra, at("rate_per_device"), c.rate_per_device);
                need(c.device_type, c.devices, "devices", &mut extra);
            }
            AttackConfig::DeviceFlood(c) => {
                rate_check(&mut extra, at("rate_per_s"), c.rate_per_s);
                need(c.device_type, 1, "device_type", &mut extra);
                if let Some(d) = c.doubling_s
                    && !(d.is_finite() && d >= 1.0)
                {
                    extra.push((at("doubling_s"), "must be at least 1 second".into()));
                }
            }
            AttackConfig::CredentialStuffing(c) => {
                rate_check(&mut extra, at("rate_per_s"), c.rate_per_s);
                if c.ips == 0 || c.ips > 65_536 {
                    extra.push((at("ips"), "must be from 1 to 65536".into()));
                }
                if c.leaked_keys > 0 {
                    need(
                        DeviceType::MobileApp,
                        c.leaked_keys,
                        "leaked_keys",
                        &mut extra,
                    );
                }
            }
            AttackConfig::Enumeration(c) => {
                rate_check(&mut extra, at("rate_per_s"), c.rate_per_s);
                need(DeviceType::MobileApp, c.attackers, "attackers", &mut extra);
            }
            AttackConfig::SlowScraping(c) => {
                rate_check(&mut extra, at("rate_per_s"), c.rate_per_s);
                need(DeviceType::MobileApp, c.attackers, "attackers", &mut extra);
                limit_check(&mut extra, at("limit"), c.limit);
                if counts.get(&DeviceType::SmartMeter).copied().unwrap_or(0) == 0 {
                    extra.push((
                        at("type"),
                        "scrapes meter histories: the fleet needs smart meters".into(),
                    ));
                }
            }
            AttackConfig::Exfiltration(c) => {
                rate_check(&mut extra, at("rate_per_s"), c.rate_per_s);
                need(c.device_type, 1, "device_type", &mut extra);
                limit_check(&mut extra, at("limit"), c.limit);
            }
            AttackConfig::Drift(c) => {
                rate_check(&mut extra, at("rate_per_s"), c.rate_per_s);
                need(c.device_type, 1, "device_type", &mut extra);
            }
            AttackConfig::TokenReplay(c) => {
                rate_check(&mut extra, at("rate_per_s"), c.rate_per_s);
                need(c.device_type, 1, "device_type", &mut extra);
                if c.ips == 0 || c.ips > 1000 {
                    extra.push((at("ips"), "must be from 1 to 1000".into()));
                }
            }
            AttackConfig::FirmwareProbe(c) => {
                rate_check(&mut extra, at("rate_per_s"), c.rate_per_s);
                need(c.device_type, 1, "device_type", &mut extra);
            }
            AttackConfig::TopicEnumeration(c) => {
                rate_check(&mut extra, at("rate_per_s"), c.rate_per_s);
                need(c.device_type, c.attackers, "attackers", &mut extra);
                if !c.device_type.is_mqtt() {
                    extra.push((
                        at("device_type"),
                        "must be an MQTT device type (mqtt_sensor)".into(),
                    ));
                }
            }
            AttackConfig::QueryScrape(c) => {
                rate_check(&mut extra, at("rate_per_s"), c.rate_per_s);
                need(c.device_type, c.attackers, "attackers", &mut extra);
                limit_check(&mut extra, at("page_size"), c.page_size);
            }
            AttackConfig::TypeMimic(c) => {
                rate_check(&mut extra, at("rate_per_s"), c.rate_per_s);
                need(c.device_type, c.devices, "devices", &mut extra);
                if c.mimic == c.device_type {
                    extra.push((at("mimic"), "must differ from device_type".into()));
                }
                if !c.mimic.is_device() || !c.device_type.is_device() {
                    extra.push((
                        at("mimic"),
                        "devices only: app users send sessions, not reports".into(),
                    ));
                }
            }
            AttackConfig::RouteMix(c) => {
                rate_check(&mut extra, at("rate_per_s"), c.rate_per_s);
                need(c.device_type, c.devices, "devices", &mut extra);
                let routes = c.device_type.profile().actions;
                if !routes.iter().any(|a| a.path == c.route) {
                    let own: Vec<&str> = routes.iter().map(|a| a.path).collect();
                    extra.push((
                        at("route"),
                        format!(
                            "not a route of {}: one of {}",
                            c.device_type,
                            own.join(", ")
                        ),
                    ));
                }
                if let Some([lo, hi]) = c.body_bytes
                    && (lo > hi || hi > 10_000_000)
                {
                    extra.push((
                        at("body_bytes"),
                        "must be [min, max] with min ≤ max ≤ 10 MB".into(),
                    ));
                }
            }
        }
        for (k, r) in extra {
            err(k, r);
        }
    }
    for (t, n) in needed {
        let have = counts.get(&t).copied().unwrap_or(0);
        if n > have {
            err(
                "attack".into(),
                format!(
                    "the attacks need {n} distinct {t} devices but the fleet has {have} \
                     (raise fleet.devices or fleet.mix.{t})"
                ),
            );
        }
    }
    errs
}

fn rate_check(errs: &mut Vec<(String, String)>, key: String, r: f64) {
    if !(r.is_finite() && r > 0.0 && r <= MAX_RATE) {
        errs.push((
            key,
            format!("must be in (0, {MAX_RATE}] requests per second"),
        ));
    }
}

fn limit_check(errs: &mut Vec<(String, String)>, key: String, limit: u32) {
    if limit == 0 || limit > MAX_LIMIT {
        errs.push((key, format!("must be from 1 to {MAX_LIMIT}")));
    }
}
