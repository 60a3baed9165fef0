//! `warden check`.

use std::process::ExitCode;

use warden_config::{PipelineConfig, WardenConfig};

use crate::CheckArgs;

pub fn run(args: &CheckArgs) -> ExitCode {
    let mut problems = 0;
    if args.config.is_none() && args.pipeline.is_empty() {
        eprintln!("nothing to check: pass --config FILE and/or --pipeline FILE");
        return ExitCode::from(2);
    }
    if let Some(path) = &args.config {
        match WardenConfig::load(Some(path)) {
            Ok(_) => println!("{}: ok", path.display()),
            Err(errs) => {
                problems += errs.0.len();
                for e in errs.0 {
                    println!("{e}");
                }
            }
        }
    }
    for path in &args.pipeline {
        match PipelineConfig::load(path) {
            Ok(_) => println!("{}: ok", path.display()),
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
