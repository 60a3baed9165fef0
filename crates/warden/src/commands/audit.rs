//! `warden audit verify`: check an audit log's hash chain (`[audit]`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use warden_event::audit::{AuditKey, verify};

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Recompute every record's hash and link; print the records' count, first and last times
    /// and the head hash, or where the chain first breaks and how. Exit code 0 when sound, 1
    /// when broken, 2 when the file or key cannot be read.
    Verify(VerifyArgs),
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The audit log (`audit.path`).
    #[arg(long)]
    pub file: PathBuf,
    /// The key of a keyed log (`audit.key_file`); required for one, and then every record
    /// must be keyed.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
}

pub fn run(args: &AuditArgs) -> ExitCode {
    match &args.command {
        AuditCommand::Verify(v) => run_verify(v),
    }
}

fn run_verify(args: &VerifyArgs) -> ExitCode {
    let key = match &args.key_file {
        Some(path) => match AuditKey::from_file(path) {
            Ok(k) => Some(k),
            Err(e) => {
                eprintln!("error: key file {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let content = match std::fs::read(&args.file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}: {e}", args.file.display());
            return ExitCode::from(2);
        }
    };
    match verify(&content, key.as_ref()) {
        Ok(s) => {
            let alg = match (s.records, s.keyed) {
                (0, _) => "empty",
                (_, true) => "HMAC-SHA256",
                (_, false) => "SHA-256",
            };
            println!(
                "{}: sound, {} records ({alg})",
                args.file.display(),
                s.records
            );
            if s.records > 0 {
                println!("first: {}", s.first_ts.unwrap_or_default());
                println!(
                    "last:  {} (seq {})",
                    s.last_ts.unwrap_or_default(),
                    s.last_seq
                );
            }
            println!("head:  {}", s.head);
            ExitCode::SUCCESS
        }
        Err(b) => {
            println!("{}: TAMPERED: {b}", args.file.display());
            println!("the {} records before it are sound", b.sound);
            ExitCode::FAILURE
        }
    }
}
