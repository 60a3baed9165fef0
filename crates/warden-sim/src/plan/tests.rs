use std::collections::{BTreeMap, HashSet};

use super::*;
use crate::scenario::ScenarioConfig;
use crate::{builtin_scenario, profile::DeviceType};

fn scenario(name: &str) -> ScenarioConfig {
    builtin_scenario(name)
        .expect("built in")
        .unwrap_or_else(|e| panic!("{e}"))
}

fn small(name: &str, devices: usize, duration_s: f64) -> ScenarioConfig {
    let mut s = scenario(name).with_duration(duration_s);
    s.fleet.devices = devices;
    s
}

#[test]
fn plans_are_deterministic_time_ordered_and_bounded() {
    let s = small("botnet_flood", 200, 120.0);
    let a: Vec<Planned> = Plan::new(&s, 3).take(3000).collect();
    let b: Vec<Planned> = Plan::new(&s, 3).take(3000).collect();
    assert_eq!(a, b, "same seed, same plan");
    let c: Vec<Planned> = Plan::new(&s, 4).take(3000).collect();
    assert_ne!(a, c, "another seed, another plan");
    let all: Vec<Planned> = Plan::new(&s, 3).collect();
    assert!(
        all.windows(2).all(|w| w[0].at_ns <= w[1].at_ns),
        "time order"
    );
    assert!(
        all.iter()
            .all(|p| p.at_ns >= 0 && p.at_ns < 120_000_000_000)
    );
    assert!(all.len() > a.len());
}

#[test]
fn benign_rate_matches_the_profiles_and_every_type_sends_its_routes() {
    // An hour of a 400-device fleet around the clock's mean (diurnal factors average out
    // only over a day, so compare a flat-profile subset exactly and the total loosely).
    let mut s = small("benign", 400, 3600.0);
    s.fleet.firmware_rollout = None;
    s.fleet.outage = None;
    let plan = Plan::new(&s, 9);
    let fleet = plan.fleet().clone();
    let mut by_type: BTreeMap<DeviceType, u64> = BTreeMap::new();
    let mut routes: BTreeMap<DeviceType, HashSet<String>> = BTreeMap::new();
    for p in plan {
        let Source::Benign(d) = p.source else {
            panic!("no attack in the benign scenario")
        };
        let t = fleet.devices[d].device_type;
        *by_type.entry(t).or_default() += 1;
        let route = p
            .request
            .path
            .split('/')
            .nth(3)
            .unwrap_or_default()
            .to_string();
        routes.entry(t).or_default().insert(route);
        assert_eq!(p.request.auth, Auth::Device(d));
        assert!(fleet.devices[d].ips.contains(&p.request.ip));
    }
    for t in [DeviceType::TemperatureSensor, DeviceType::SmartMeter] {
        let n = fleet.of_type(t).len() as f64;
        let expected = n * t.profile().mean_rate() * 3600.0;
        let got = by_type[&t] as f64;
        assert!(
            (got / expected - 1.0).abs() < 0.1,
            "{t}: {got} vs {expected}"
        );
    }
    assert!(routes[&DeviceType::Camera].contains("media"));
    assert!(routes[&DeviceType::IndustrialGateway].contains("ingest"));
    assert!(routes[&DeviceType::MobileApp].contains("app"));
    assert!(routes[&DeviceType::TemperatureSensor].contains("telemetry"));
}

#[test]
fn diurnal_pattern_cameras_busier_in_the_afternoon() {
    let count = |hour: f64| {
        let mut s = small("benign", 300, 1800.0);
        s.fleet.firmware_rollout = None;
        s.fleet.outage = None;
        s.fleet.start_hour = hour;
        let plan = Plan::new(&s, 5);
        let fleet = plan.fleet().clone();
        plan.filter(|p| match p.source {
            Source::Benign(d) => fleet.devices[d].device_type == DeviceType::Camera,
            Source::Attack { .. } => false,
        })
        .count()
    };
    let (day, night) = (count(14.0), count(2.0));
    assert!(
        day > 3 * night,
        "cameras at 14:00: {day}, at 02:00: {night}"
    );
}

#[test]
fn outage_silences_the_fleet_then_a_reconnect_storm() {
    let s = small("benign", 300, 300.0);
    let o = s.fleet.outage.clone().expect("outage");
    let (from, to) = (
        (o.start_s * NS) as i64,
        ((o.start_s + o.duration_s) * NS) as i64,
    );
    let plan: Vec<Planned> = Plan::new(&s, 1).collect();
    let in_outage = plan
        .iter()
        .filter(|p| p.at_ns >= from && p.at_ns < to)
        .count();
    assert_eq!(in_outage, 0, "nothing is sent during the outage");
    let per_5s = |t: i64| {
        plan.iter()
            .filter(|p| p.at_ns >= t && p.at_ns < t + 5 * NS as i64)
            .count()
    };
    let storm = per_5s(to);
    let before = per_5s(from - 10 * NS as i64);
    assert!(
        storm > 3 * before,
        "storm {storm} vs normal {before} per 5 s"
    );
    // The rollout: chunk downloads of 64 KiB.
    let chunks = plan
        .iter()
        .filter(|p| p.request.path.contains("/firmware/images/"))
        .count();
    assert!(chunks > 100, "{chunks} firmware chunks");
}

#[test]
fn attacks_run_in_their_window_at_their_rate_with_distinct_attackers() {
    let s = small("botnet_flood", 200, 60.0);
    let plan = Plan::new(&s, 2);
    let attacks = plan.attacks().to_vec();
    let fleet = plan.fleet().clone();
    let a = &attacks[0];
    assert_eq!(a.attackers.len(), 12);
    let devices: HashSet<usize> = a.attackers.iter().filter_map(|x| x.device).collect();
    assert_eq!(devices.len(), 12, "distinct devices");
    assert!(
        devices
            .iter()
            .all(|d| fleet.devices[*d].device_type == DeviceType::TemperatureSensor)
    );
    let mut per_attacker = vec![0u64; 12];
    for p in plan {
        if let Source::Attack { attack, attacker } = p.source {
            assert_eq!(attack, 0);
            assert!(p.at_ns >= a.start_ns && p.at_ns < a.end_ns);
            let d = a.attackers[attacker].device.expect("a device");
            assert_eq!(p.request.auth, Auth::Device(d), "floods with its own key");
            assert_eq!(p.request.ip, fleet.devices[d].ips[0]);
            per_attacker[attacker] += 1;
        }
    }
    let window_s = (a.end_ns - a.start_ns) as f64 / NS;
    for n in per_attacker {
        let rate = n as f64 / window_s;
        assert!((rate - 50.0).abs() < 3.0, "{rate} req/s");
    }
}

#[test]
fn every_attack_class_sends_what_it_should() {
    for name in [
        "credential_stuffing",
        "enumeration",
        "slow_scraping",
        "exfiltration",
        "drift",
        "token_replay",
        "firmware_probe",
    ] {
        let s = small(name, 300, 120.0);
        let plan = Plan::new(&s, 11);
        let attacks = plan.attacks().to_vec();
        let fleet = plan.fleet().clone();
        let reqs: Vec<Planned> = plan
            .filter(|p| matches!(p.source, Source::Attack { .. }))
            .collect();
        assert!(!reqs.is_empty(), "{name}: no attack request");
        let a = &attacks[0];
        let ok = |f: &dyn Fn(&Planned) -> bool| reqs.iter().all(f);
        match name {
            "credential_stuffing" => {
                assert_eq!(a.attackers.len(), 3);
                assert_eq!(a.victims.len(), 2, "leaked keys' owners");
                assert!(ok(&|p| p.request.ip.to_string().starts_with("198.1")));
                let guesses = reqs
                    .iter()
                    .filter(|p| matches!(p.request.auth, Auth::Key(_)))
                    .count();
                let leaked = reqs
                    .iter()
                    .filter(|p| matches!(p.request.auth, Auth::Device(_)))
                    .count();
                assert!(
                    leaked > 0 && guesses > 20 * leaked,
                    "{guesses} guesses, {leaked} leaked"
                );
            }
            "enumeration" => {
                let targets: HashSet<&str> = reqs.iter().map(|p| p.request.path.as_str()).collect();
                assert_eq!(targets.len(), reqs.len(), "a new device id every time");
                assert!(ok(&|p| p.request.path.starts_with("/api/v1/app/devices/")));
            }
            "slow_scraping" => {
                assert!(ok(&|p| p.request.path.contains("/history?limit=500")));
            }
            "exfiltration" => {
                assert!(ok(&|p| p.request.path.contains("/api/v1/export/")
                    && p.request.path.ends_with("limit=50000")));
            }
            "drift" => {
                let new_ip = a.attackers[0]
                    .subjects
                    .iter()
                    .any(|s| s.value.starts_with("198.18."));
                assert!(new_ip, "{:?}", a.attackers[0].subjects);
                // The drift ramps up: more in the second half of the window.
                let mid = (a.start_ns + a.end_ns) / 2;
                let first = reqs.iter().filter(|p| p.at_ns < mid).count();
                assert!(
                    reqs.len() - first > 2 * first,
                    "ramp: {first} then {}",
                    reqs.len() - first
                );
            }
            "token_replay" => {
                let d = a.attackers[0].device.expect("victim");
                assert!(ok(&|p| p.request.auth == Auth::Device(d)
                    && !fleet.devices[d].ips.contains(&p.request.ip)));
            }
            "firmware_probe" => {
                let methods: HashSet<&str> = reqs.iter().map(|p| p.request.method).collect();
                assert!(methods.contains("PUT") && methods.contains("DELETE"));
            }
            _ => unreachable!(),
        }
    }
}

#[test]
fn a_replacing_route_mix_silences_the_device_own_traffic_in_its_window_only() {
    let text = |replace: bool| {
        format!(
            r#"
name = "rm"
description = "route mix"
seed = 5
duration_s = 600.0
[fleet]
devices = 20
tenants = 1
start_hour = 9.0
period_scale = 1.0
[fleet.mix]
temperature_sensor = 1.0
[[attack]]
name = "beacon"
type = "route_mix"
start_s = 200.0
end_s = 400.0
devices = 1
device_type = "temperature_sensor"
rate_per_s = 0.033
route = "/api/v1/config/{{id}}"
replace = {replace}
[attack.expect]
detected = true
[expect]
max_false_quarantines = 0
"#
        )
    };
    for replace in [false, true] {
        let s = ScenarioConfig::from_toml(&text(replace)).unwrap_or_else(|e| panic!("{e}"));
        let plan = Plan::new(&s, 5);
        let d = plan.attacks()[0].attackers[0].device.expect("a device");
        let (mut own_before, mut own_during, mut own_after, mut attack) = (0, 0, 0, 0);
        for p in plan {
            match p.source {
                Source::Benign(x) if x == d => match p.at_ns {
                    t if t < 200_000_000_000 => own_before += 1,
                    t if t < 400_000_000_000 => own_during += 1,
                    _ => own_after += 1,
                },
                Source::Benign(_) => {}
                _ => attack += 1,
            }
        }
        assert!(own_before > 3 && own_after > 3, "{own_before} {own_after}");
        assert!(attack > 3, "{attack}");
        assert_eq!(own_during == 0, replace, "own reports during: {own_during}");
    }
}

#[test]
fn a_type_mimic_sends_the_other_type_mix_on_its_routes_or_its_own() {
    let text = |own_routes: bool| {
        format!(
            r#"
name = "tm"
description = "type mimic"
seed = 5
duration_s = 1200.0
[fleet]
devices = 20
tenants = 1
start_hour = 9.0
period_scale = 1.0
[fleet.mix]
temperature_sensor = 0.5
camera = 0.5
[[attack]]
name = "camera_like"
type = "type_mimic"
start_s = 100.0
end_s = 1100.0
devices = 1
device_type = "temperature_sensor"
mimic = "camera"
rate_per_s = 0.2
own_routes = {own_routes}
[attack.expect]
detected = true
[expect]
max_false_quarantines = 0
"#
        )
    };
    for own_routes in [false, true] {
        let s = ScenarioConfig::from_toml(&text(own_routes)).unwrap_or_else(|e| panic!("{e}"));
        let plan = Plan::new(&s, 5);
        let d = plan.attacks()[0].attackers[0].device.expect("a device");
        let identity = plan.fleet().devices[d].identity.clone();
        assert!(identity.starts_with("sensor-"), "{identity}");
        let (mut own_during, mut sent, mut big, mut media) = (0, 0, 0, 0);
        for p in plan {
            match p.source {
                Source::Benign(x) if x == d => {
                    if (100_000_000_000..1_100_000_000_000).contains(&p.at_ns) {
                        own_during += 1;
                    }
                }
                Source::Benign(_) => {}
                _ => {
                    sent += 1;
                    assert!(p.request.path.contains(&identity), "{}", p.request.path);
                    assert_eq!(p.request.user_agent, "acme-thermo-fw/2.3.1");
                    media += usize::from(p.request.path.contains("/media/"));
                    big += usize::from(p.request.body.len > 220);
                }
            }
        }
        // Replaces its own traffic by default; a camera's sizes, most above any sensor's.
        assert_eq!(own_during, 0);
        assert!(sent > 150, "{sent}");
        assert!(big * 2 > sent, "{big} of {sent} above a sensor's 220 B");
        assert_eq!(media == 0, own_routes, "{media} media requests");
    }
}

#[test]
fn a_type_mimic_of_its_own_type_is_refused() {
    let text = r#"
name = "tm"
description = "type mimic"
seed = 5
duration_s = 600.0
[fleet]
devices = 20
tenants = 1
start_hour = 9.0
period_scale = 1.0
[fleet.mix]
temperature_sensor = 1.0
[[attack]]
name = "self"
type = "type_mimic"
start_s = 100.0
end_s = 500.0
device_type = "temperature_sensor"
mimic = "temperature_sensor"
rate_per_s = 0.05
[attack.expect]
detected = true
[expect]
max_false_quarantines = 0
"#;
    let err = ScenarioConfig::from_toml(text)
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("mimic") && err.contains("must differ"),
        "{err}"
    );
}

#[test]
fn churn_brings_devices_in_takes_them_out_and_away_for_a_while() {
    let mut s = small("benign", 400, 600.0);
    s.fleet.firmware_rollout = None;
    s.fleet.outage = None;
    s.fleet.period_scale = 0.2;
    let without: Vec<Planned> = Plan::new(&s, 5).collect();
    s.fleet.churn = Some(crate::scenario::ChurnSpec {
        joining: 0.2,
        leaving: 0.2,
        offline: 0.2,
        offline_s: 200.0,
        max_backlog: 8,
    });
    s.validate().unwrap_or_else(|e| panic!("{e}"));
    let plan = Plan::new(&s, 5);
    let fleet = plan.fleet().clone();
    let plan: Vec<Planned> = plan.collect();
    assert!(plan.windows(2).all(|w| w[0].at_ns <= w[1].at_ns));
    let mut times: BTreeMap<usize, Vec<i64>> = BTreeMap::new();
    for p in &plan {
        if let Source::Benign(d) = p.source {
            times.entry(d).or_default().push(p.at_ns);
        }
    }
    let end = (600.0 * NS) as i64;
    let early = |ts: &Vec<i64>| ts.first().is_some_and(|t| *t < end / 10);
    let late = |ts: &Vec<i64>| ts.last().is_some_and(|t| *t > end - end / 10);
    // The longest silence of a device, ns.
    let gap = |ts: &Vec<i64>| ts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    let n = fleet.devices.len() as f64;
    let joined = times.values().filter(|ts| !early(ts) && late(ts)).count() as f64;
    let left = times.values().filter(|ts| early(ts) && !late(ts)).count() as f64;
    // Devices silent for 190 s or more and reporting again at the end: the away ones, plus
    // those that are that quiet anyway (app users between sessions, a meter at night).
    let long_gap = |m: &BTreeMap<usize, Vec<i64>>| {
        m.values()
            .filter(|ts| late(ts) && gap(ts) >= (190.0 * NS) as i64)
            .count() as f64
    };
    let mut before: BTreeMap<usize, Vec<i64>> = BTreeMap::new();
    for p in &without {
        if let Source::Benign(d) = p.source {
            before.entry(d).or_default().push(p.at_ns);
        }
    }
    let away = long_gap(&times) - long_gap(&before);
    for (what, got) in [("joined", joined), ("left", left), ("away", away)] {
        // 20 % each, blurred: devices that join or leave near an end, come back after it, or
        // report so rarely that their first report falls after the first tenth of the run.
        assert!(
            (0.05 * n..=0.35 * n).contains(&got),
            "{what}: {got} of {n} devices"
        );
    }
    // A device back from away sends its backlog in a burst: some device sends ≥ 4 requests
    // within 3 s right after a silence of ≥ 190 s.
    let burst = times.values().any(|ts| {
        ts.windows(2).enumerate().any(|(i, w)| {
            w[1] - w[0] >= (190.0 * NS) as i64
                && ts[i + 1..]
                    .iter()
                    .take_while(|t| **t < w[1] + 3 * NS as i64)
                    .count()
                    >= 4
        })
    });
    assert!(burst, "no backlog burst after an absence");
    // Bad churn is refused with the key named.
    let mut bad = s.clone();
    if let Some(c) = bad.fleet.churn.as_mut() {
        c.joining = 0.7;
        c.offline_s = 0.0;
    }
    let e = bad.validate().expect_err("refused").to_string();
    assert!(e.contains("fleet.churn") && e.contains("offline_s"), "{e}");
}
