use super::*;
use crate::BUILTIN_SCENARIOS;

#[test]
fn every_scenario_file_is_built_in_and_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/scenarios");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("tests/scenarios")
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "toml").then(|| p.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    files.sort();
    let mut built_in: Vec<String> = BUILTIN_SCENARIOS
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    built_in.sort();
    assert_eq!(files, built_in, "add new scenario files to scenarios.rs");
    for name in files {
        let path = std::path::Path::new(dir).join(format!("{name}.toml"));
        let s = ScenarioConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.name, name, "the name matches the file");
        assert!(
            s.attack
                .iter()
                .all(|a| a.expect().detected || a.expect().reason.is_some()),
            "{name}"
        );
    }
}

const GOOD: &str = r#"
name = "t"
description = "test"
duration_s = 60.0
[fleet]
devices = 50
[fleet.mix]
temperature_sensor = 1.0
mobile_app = 1.0
[[attack]]
name = "f"
type = "device_flood"
start_s = 10.0
end_s = 50.0
rate_per_s = 20.0
expect = { detected = true }
[expect]
max_false_quarantines = 0
"#;

#[test]
fn structural_problems_are_all_reported_with_their_paths() {
    let text = r#"
name = "t"
description = 3
duration_s = 60.0
colour = "blue"
[fleet]
devices = 50
[fleet.mix]
toaster = 1.0
[[attack]]
name = "f"
type = "device_flood"
start_s = 10.0
end_s = 50.0
rate_per_second = 20.0
expect = { detected = true }
[[attack]]
name = "g"
type = "teleport"
start_s = 1.0
end_s = 2.0
"#;
    let errs = ScenarioConfig::from_toml(text).expect_err("invalid").0;
    let all: Vec<String> = errs
        .iter()
        .map(|e| format!("{}: {}", e.key, e.reason))
        .collect();
    let text = all.join("\n");
    for needle in [
        "description:",
        "colour",
        "fleet.mix: Additional properties are not allowed ('toaster'",
        "attack[0]",
        "rate_per_second",
        "attack[1].type: unknown type `teleport`",
        "\"expect\" is a required property",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
}

#[test]
fn semantic_problems_are_all_reported_with_their_paths() {
    let text = GOOD
        .replace("duration_s = 60.0", "duration_s = 60.0\nseed = 1")
        .replace(
            "devices = 50",
            "devices = 50\nperiod_scale = 0.0\nstart_hour = 25.0",
        )
        .replace("end_s = 50.0", "end_s = 70.0")
        .replace("rate_per_s = 20.0", "rate_per_s = -1.0")
        .replace(
            "expect = { detected = true }",
            "expect = { detected = false }",
        )
        + r#"
[[attack]]
name = "f"
type = "botnet_flood"
start_s = 5.0
end_s = 6.0
devices = 40
rate_per_device = 5.0
expect = { detected = true, min_recall = 1.5, reason = "x" }
"#;
    let errs = ScenarioConfig::from_toml(&text).expect_err("invalid").0;
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    for key in [
        "fleet.period_scale",
        "fleet.start_hour",
        "attack[0].end_s",
        "attack[0].rate_per_s",
        "attack[0].expect.reason",
        "attack[1].name",
        "attack[1].expect.reason",
        "attack[1].expect.min_recall",
        "attack",
    ] {
        assert!(keys.contains(&key), "missing {key} in {errs:?}");
    }
    let need = errs.iter().find(|e| e.key == "attack").expect("need");
    assert!(
        need.reason
            .contains("41 distinct temperature_sensor devices but the fleet has 25"),
        "{need:?}"
    );
}

#[test]
fn duration_and_rate_overrides() {
    let s = ScenarioConfig::from_toml(GOOD).expect("valid");
    let short = s.clone().with_duration(30.0);
    assert_eq!(short.attack[0].window(), (5.0, 25.0));
    assert!(short.validate().is_ok());
    let sized = s.clone().with_rate(100.0);
    let rate = sized.mean_rate();
    assert!(
        (rate - 100.0).abs() < 5.0,
        "{rate} req/s with {} devices",
        sized.fleet.devices
    );
    assert!(sized.fleet.devices > s.fleet.devices);
}

#[test]
fn mix_counts_add_up_and_follow_the_weights() {
    let mix = Mix {
        temperature_sensor: 0.35,
        camera: 0.1,
        smart_meter: 0.3,
        industrial_gateway: 0.05,
        mobile_app: 0.2,
        mqtt_sensor: 0.0,
    };
    for n in [1, 7, 100, 1999] {
        let counts = mix.counts(n);
        assert_eq!(counts.iter().map(|(_, c)| c).sum::<usize>(), n);
    }
    let c: std::collections::BTreeMap<DeviceType, usize> = mix.counts(1000).into_iter().collect();
    assert_eq!(c[&DeviceType::TemperatureSensor], 350);
    assert_eq!(c[&DeviceType::IndustrialGateway], 50);
    let only = Mix {
        camera: 2.0,
        ..Mix::default()
    };
    assert_eq!(
        only.counts(3),
        vec![
            (DeviceType::TemperatureSensor, 0),
            (DeviceType::Camera, 3),
            (DeviceType::SmartMeter, 0),
            (DeviceType::IndustrialGateway, 0),
            (DeviceType::MobileApp, 0),
            (DeviceType::MqttSensor, 0),
        ]
    );
}
