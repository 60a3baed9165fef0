#[test]
fn dbg_flood() {
    for (dur, ps) in [(35.0, 0.1), (40.0, 0.1), (45.0, 0.1), (40.0, 0.2)] {
        let scenario = warden_tests::scenarios::short("device_flood", dur, 80, ps);
        let pipeline = warden_tests::e2e::fast_pipeline().unwrap();
        let mut engine = warden_stream::Engine::new(&pipeline).unwrap();
        let mut detect = |b: &arrow::record_batch::RecordBatch,
                          now: i64|
         -> Result<_, warden_sim::accelerated::DetectError> {
            Ok(engine
                .process(b, now)?
                .into_iter()
                .map(|o| (o.alert, o.decision))
                .collect())
        };
        let opts = warden_sim::AcceleratedOptions::new(&scenario);
        let run =
            warden_sim::run_accelerated(&scenario, 7, &opts, Some(&mut detect), |_, _| {}).unwrap();
        let a = &run.labels.attacks[0];
        println!(
            "dur {dur} ps {ps}: attack {:?} subjects {:?} start {} first {:?}",
            a.name,
            a.attackers[0].subjects,
            (a.start_ns - run.labels.started_at) / 1_000_000,
            a.attackers[0]
                .first_sent_ns
                .map(|t| (t - run.labels.started_at) / 1_000_000)
        );
        for al in run.alerts.iter().take(8) {
            println!(
                "  {} {} {}",
                (al.ts - run.labels.started_at) / 1_000_000,
                al.subject,
                al.message
            );
        }
    }
}
