use super::*;

fn config() -> CohortConfig {
    serde_json::from_str(
        r#"{"name": "together", "feature": "requests_1m", "peers": "device_type",
            "warmup_samples": 10}"#,
    )
    .expect("config")
}

/// One round: `values[k]` for keys 0..n, all in group 0.
fn round(d: &mut Cohort, values: &[f64], at: i64) -> Vec<KeyId> {
    let mut fired = Vec::new();
    for (k, v) in values.iter().enumerate() {
        let vals = [*v];
        let s = Sample::of(k as KeyId, &vals, at);
        if d.observe(&s).is_some() {
            fired.push(k as KeyId);
        }
    }
    d.end_round(at);
    fired
}

/// A fleet of 40 keys with their own levels (1 to 40 requests a minute) and noise.
fn normal_round(t: u32) -> Vec<f64> {
    (0..40)
        .map(|k| {
            let base = f64::from(k + 1);
            let wobble = f64::from((t * 7 + k * 13) % 5) / 5.0 - 0.4;
            (base * (1.0 + 0.5 * wobble)).round()
        })
        .collect()
}

#[test]
fn a_coordinated_rise_fires_for_the_risers_only() {
    let mut d = Cohort::new(config());
    for t in 0..200 {
        assert!(
            round(&mut d, &normal_round(t), i64::from(t)).is_empty(),
            "round {t}"
        );
    }
    // Eight keys each at 6× their own level: no absolute bar would notice key 0 (6/min).
    let mut fired = Vec::new();
    for t in 200..204 {
        let mut v = normal_round(t);
        for x in v.iter_mut().take(8) {
            *x *= 6.0;
        }
        fired.extend(round(&mut d, &v, i64::from(t)));
    }
    fired.sort_unstable();
    fired.dedup();
    assert_eq!(fired, (0..8).collect::<Vec<KeyId>>());
}

#[test]
fn one_key_rising_alone_is_not_a_cohort() {
    let mut d = Cohort::new(config());
    for t in 0..200 {
        round(&mut d, &normal_round(t), i64::from(t));
    }
    for t in 200..220 {
        let mut v = normal_round(t);
        v[3] *= 10.0;
        v[9] *= 10.0;
        assert!(round(&mut d, &v, i64::from(t)).is_empty());
    }
}

#[test]
fn a_lasting_change_of_the_group_becomes_its_usual() {
    let mut d = Cohort::new(config());
    for t in 0..200 {
        round(&mut d, &normal_round(t), i64::from(t));
    }
    // Ten keys move to 10× their level for good (a new firmware that reports more).
    let mut fired_at = Vec::new();
    for t in 200..20_000u32 {
        let mut v = normal_round(t);
        for x in v.iter_mut().skip(10).take(10) {
            *x *= 10.0;
        }
        if !round(&mut d, &v, i64::from(t)).is_empty() {
            fired_at.push(t);
        }
    }
    assert!(
        fired_at.first().is_some_and(|t| *t < 205),
        "{:?}",
        fired_at.first()
    );
    let last = fired_at.last().copied().unwrap_or(0);
    assert!(last < 19_000, "still firing at round {last}");
}

#[test]
fn with_a_sustain_a_one_round_burst_of_many_keys_is_not_a_cohort() {
    let mut c = config();
    c.sustain_samples = 3;
    let mut d = Cohort::new(c);
    for t in 0..200 {
        round(&mut d, &normal_round(t), i64::from(t));
    }
    // A reconnect storm: everyone at 6× for two rounds.
    for t in 200..202 {
        let v: Vec<f64> = normal_round(t).iter().map(|x| x * 6.0).collect();
        assert!(round(&mut d, &v, i64::from(t)).is_empty());
    }
    for t in 202..240 {
        round(&mut d, &normal_round(t), i64::from(t));
    }
    // A sustained rise of eight keys fires from its third round.
    let mut first = None;
    for t in 240..250 {
        let mut v = normal_round(t);
        for x in v.iter_mut().take(8) {
            *x *= 6.0;
        }
        if !round(&mut d, &v, i64::from(t)).is_empty() && first.is_none() {
            first = Some(t);
        }
    }
    assert_eq!(
        first,
        Some(243),
        "deviating from 242, surging after its round"
    );
}

#[test]
fn keys_still_warming_up_never_deviate() {
    let mut d = Cohort::new(config());
    for t in 0..5 {
        let v: Vec<f64> = (0..40).map(|_| if t < 3 { 1.0 } else { 100.0 }).collect();
        assert!(round(&mut d, &v, t).is_empty());
    }
}

#[test]
fn state_round_trips() {
    let mut d = Cohort::new(config());
    for t in 0..20 {
        round(&mut d, &normal_round(t), i64::from(t));
    }
    let saved = d.save_key(5).expect("state");
    let mut e = Cohort::new(config());
    e.load_key(5, saved).expect("load");
    assert_eq!(e.normal(5), d.normal(5));
}
