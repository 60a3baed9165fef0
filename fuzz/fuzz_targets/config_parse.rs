//! Config, pipeline, RBAC policy and device registry parsing (warden-config's strict TOML
//! loaders, then their semantic validation): never a panic, whatever the text. Byte 0 picks
//! the parser, the rest is the file's text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_config::{PipelineConfig, RbacPolicy, RegistryFile, WardenConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match which % 4 {
        0 => {
            if let Ok(c) = WardenConfig::from_toml(text) {
                let _ = c.validate();
            }
        }
        1 => {
            if let Ok(p) = PipelineConfig::from_toml(text) {
                let _ = p.validate();
            }
        }
        2 => {
            if let Ok(p) = RbacPolicy::from_toml(text) {
                let _ = p.validate();
            }
        }
        _ => {
            let _ = RegistryFile::from_toml(text);
        }
    }
});
