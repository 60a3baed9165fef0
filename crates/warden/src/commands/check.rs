//! `warden check`.

use std::process::ExitCode;

use warden_config::WardenConfig;

use crate::CheckArgs;

pub fn run(args: &CheckArgs) -> ExitCode {
    let mut problems = 0;
    if args.config.is_none() && args.pipeline.is_empty() {
        eprintln!("nothing to check: pass --config FILE and/or --pipeline FILE");
        return ExitCode::from(2);
    }
    if let Some(path) = &args.config {
        match WardenConfig::load(Some(path)) {
            Ok(config) => {
                // The files the config names: RBAC policies and JSON Schemas.
                let mut errs: Vec<warden_config::ConfigError> = Vec::new();
                for p in config.rbac.policy.iter().chain(&config.rbac.shadow_policy) {
                    if let Err(e) = warden_config::RbacPolicy::load(std::path::Path::new(p)) {
                        errs.extend(e.0);
                    }
                }
                // The audit log's key, as a processor or console would load it.
                if let Some(k) = config.audit.as_ref().and_then(|a| a.key_file.as_ref())
                    && let Err(e) =
                        warden_event::audit::AuditKey::from_file(std::path::Path::new(k))
                {
                    let mut e = warden_config::ConfigError::new("audit.key_file", e);
                    e.file = Some(path.clone());
                    errs.push(e);
                }
                // Key files of encryption at rest: readable, 32 bytes, owner-only.
                if let Err(mut e) = config.at_rest.keyring() {
                    e.file = Some(path.clone());
                    errs.push(e);
                }
                if let Err(e) = warden_gateway::validate::compile(&config) {
                    errs.extend(e.0.into_iter().map(|mut e| {
                        e.file = Some(path.clone());
                        e
                    }));
                }
                if errs.is_empty() {
                    println!("{}: ok", path.display());
                }
                problems += errs.len();
                for e in errs {
                    println!("{e}");
                }
            }
            Err(errs) => {
                problems += errs.0.len();
                for e in errs.0 {
                    println!("{e}");
                }
            }
        }
    }
    for path in &args.pipeline {
        // The pipeline, then the model files its ML detectors load (as the processor would,
        // from the working directory).
        let checked = warden_stream::load_pipeline(path).and_then(|p| {
            let errs = warden_stream::ml::check_models(&p);
            if errs.is_empty() {
                Ok(())
            } else {
                Err(warden_config::ConfigErrors(
                    errs.into_iter()
                        .map(|mut e| {
                            e.file = Some(path.clone());
                            e
                        })
                        .collect(),
                ))
            }
        });
        match checked {
            Ok(()) => println!("{}: ok", path.display()),
            Err(errs) => {
                problems += errs.0.len();
                for e in errs.0 {
                    println!("{e}");
                }
            }
        }
    }
    if problems > 0 {
        println!("{problems} problem(s)");
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}
