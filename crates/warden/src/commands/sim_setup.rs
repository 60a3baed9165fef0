//! The scenario, seed and fleet shared by `warden simulate` and `warden up --scenario`: both
//! resolve them the same way, so the keys `up` registers are the ones `simulate` sends.

use anyhow::{Context, bail};
use warden_sim::{Fleet, ScenarioConfig};

/// What selects a simulated fleet.
#[derive(Debug, Clone, Default)]
pub struct SimChoice {
    /// Built-in scenario name or file.
    pub scenario: String,
    pub seed: Option<u64>,
    /// Devices in the fleet.
    pub devices: Option<usize>,
    /// Size the fleet to this mean request rate instead.
    pub rate: Option<f64>,
    /// Run length, seconds.
    pub duration_s: Option<f64>,
}

/// The scenario with the overrides applied and validated, and the seed.
pub fn resolve(choice: &SimChoice) -> anyhow::Result<(ScenarioConfig, u64)> {
    let mut scenario =
        warden_sim::resolve_scenario(&choice.scenario).map_err(|e| anyhow::anyhow!("{e}"))?;
    if choice.devices.is_some() && choice.rate.is_some() {
        bail!("give --devices or --rate, not both");
    }
    if let Some(d) = choice.duration_s {
        scenario = scenario.with_duration(d);
    }
    if let Some(n) = choice.devices {
        scenario.fleet.devices = n;
    }
    if let Some(r) = choice.rate {
        if !(r.is_finite() && r > 0.0) {
            bail!("--rate must be a positive number of requests per second");
        }
        scenario = scenario.with_rate(r);
    }
    scenario
        .validate()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("scenario `{}` with the given options", scenario.name))?;
    let seed = choice.seed.unwrap_or(scenario.seed);
    Ok((scenario, seed))
}

/// The same flags, to print for the other command.
pub fn flags(choice: &SimChoice, seed: u64) -> String {
    let mut s = format!("--scenario {} --seed {seed}", choice.scenario);
    if let Some(n) = choice.devices {
        s.push_str(&format!(" --devices {n}"));
    }
    if let Some(r) = choice.rate {
        s.push_str(&format!(" --rate {r}"));
    }
    s
}

/// One line about the fleet.
pub fn describe(scenario: &ScenarioConfig, fleet: &Fleet, seed: u64) -> String {
    let types: Vec<String> = fleet
        .by_type
        .iter()
        .map(|(t, v)| format!("{} {t}", v.len()))
        .collect();
    format!(
        "fleet of scenario `{}` (seed {seed}): {} devices ({}), ~{:.0} req/s on average, fingerprint {}",
        scenario.name,
        fleet.devices.len(),
        types.join(", "),
        scenario.mean_rate(),
        fleet.fingerprint()
    )
}

/// Parse a duration: seconds, or a number with `s`, `m`, `h` or `d`.
pub fn parse_duration(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 90, 90s, 15m, 2h, 1d)"))?;
    let k = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => return Err(format!("unknown unit in `{s}` (s, m, h or d)")),
    };
    if !(n.is_finite() && n > 0.0) {
        return Err(format!("`{s}` must be positive"));
    }
    Ok(n * k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(90.0));
        assert_eq!(parse_duration("15m"), Ok(900.0));
        assert_eq!(parse_duration("1d"), Ok(86_400.0));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("3w").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn overrides_are_validated() {
        let base = SimChoice {
            scenario: "device_flood".into(),
            ..SimChoice::default()
        };
        let (s, seed) = resolve(&base).expect("built in");
        assert_eq!((s.fleet.devices, seed), (2000, 7));
        let both = SimChoice {
            devices: Some(10),
            rate: Some(5.0),
            ..base.clone()
        };
        assert!(resolve(&both).is_err());
        let tiny = SimChoice {
            scenario: "botnet_flood".into(),
            devices: Some(5),
            ..base.clone()
        };
        let err = format!("{:#}", resolve(&tiny).expect_err("12 bots among 5 devices"));
        assert!(
            err.contains("12 distinct temperature_sensor devices"),
            "{err}"
        );
        let missing = SimChoice {
            scenario: "nope".into(),
            ..base
        };
        assert!(format!("{:#}", resolve(&missing).expect_err("unknown")).contains("botnet_flood"));
    }
}
