//! Opening the gateway's event spool from its config.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tracing::info;
use warden_bus::spool::{FsyncPolicy, OverflowPolicy, Spool, SpoolConfig};
use warden_config::{BusKind, FsyncMode, SpoolEnabled, SpoolOverflow, WardenConfig};

use crate::GatewayError;

/// The spool this gateway's config asks for: `auto` means on with Kafka (where the bus can be
/// away) and off with the embedded bus (in-process: a spool would add nothing).
pub fn open(config: &WardenConfig) -> Result<Option<Spool>, GatewayError> {
    let s = &config.gateway.spool;
    let enabled = match s.enabled {
        SpoolEnabled::On => true,
        SpoolEnabled::Off => false,
        SpoolEnabled::Auto => config.bus.kind == BusKind::Kafka,
    };
    if !enabled {
        return Ok(None);
    }
    let dir = PathBuf::from(&s.dir).join(&config.gateway.id);
    // Key files are read here, at start: a missing, short or group-readable key stops the
    // gateway with the file named.
    let keys = config
        .at_rest
        .write_keyring()
        .map_err(GatewayError::AtRest)?
        .map(Arc::new);
    let encrypted = keys.is_some();
    let spool = Spool::open(SpoolConfig {
        dir: dir.clone(),
        segment_bytes: s.segment_bytes,
        max_bytes: s.max_bytes,
        fsync: match s.fsync {
            FsyncMode::Always => FsyncPolicy::Always,
            FsyncMode::Interval => {
                FsyncPolicy::Interval(Duration::from_millis(s.fsync_interval_ms))
            }
            FsyncMode::Never => FsyncPolicy::Never,
        },
        overflow: match s.overflow {
            SpoolOverflow::DropNewest => OverflowPolicy::DropNewest,
            SpoolOverflow::DropOldest => OverflowPolicy::DropOldest,
        },
        keys,
    })?;
    info!(
        dir = %dir.display(),
        pending = spool.pending(),
        bytes = spool.bytes(),
        encrypted,
        "Event spool opened."
    );
    Ok(Some(spool))
}

#[cfg(test)]
mod tests;
