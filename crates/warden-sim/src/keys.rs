//! Demo devices and their API keys.

use rand::distr::{Alphanumeric, SampleString};
use rand::{SeedableRng, rngs::StdRng};
use warden_config::{ApiKeyConfig, hash_api_key};

/// Length of a demo API key.
pub const KEY_LEN: usize = 32;
/// Tenants demo devices are spread over (round-robin).
pub const DEMO_TENANTS: [&str; 3] = ["demo-north", "demo-south", "demo-east"];
/// Device type of every demo device (this first cut simulates one type).
pub const DEMO_DEVICE_TYPE: &str = "temperature_sensor";

/// A simulated device: its identity, its API key in clear (what the device sends), and the
/// key's entry for the gateway config (hashed).
#[derive(Debug, Clone, PartialEq)]
pub struct DemoDevice {
    /// Device id, `sensor-NNNN` with `NNNN` its index in the fleet.
    pub identity: String,
    /// API key in clear, sent as `X-Api-Key`.
    pub key: String,
    /// The key as the gateway stores it (`api_keys[]`).
    pub config: ApiKeyConfig,
}

/// `n` demo devices (`sensor-0000`, `sensor-0001`, …) with random keys derived from `seed`:
/// the same seed always gives the same keys.
pub fn demo_keys(n: usize, seed: u64) -> Vec<DemoDevice> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let identity = format!("sensor-{i:04}");
            let key = Alphanumeric.sample_string(&mut rng, KEY_LEN);
            let config = ApiKeyConfig {
                id: format!("key-{identity}"),
                sha256: hash_api_key(&key),
                identity: identity.clone(),
                tenant: DEMO_TENANTS[i % DEMO_TENANTS.len()].to_string(),
                device_type: DEMO_DEVICE_TYPE.to_string(),
                roles: vec!["device".to_string()],
                not_before: None,
                expires_at: None,
            };
            DemoDevice {
                identity,
                key,
                config,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    #[test]
    fn keys_are_deterministic_distinct_and_hashed() {
        let a = demo_keys(20, 7);
        assert_eq!(a, demo_keys(20, 7));
        assert_ne!(a[0].key, demo_keys(1, 8)[0].key, "another seed, other keys");
        assert_eq!(a[..5], demo_keys(5, 7)[..], "a prefix of a larger fleet");
        assert_eq!(a[7].identity, "sensor-0007");
        assert_eq!(a[7].config.id, "key-sensor-0007");
        let mut keys: Vec<&str> = a.iter().map(|d| d.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), 20);
        for d in &a {
            assert_eq!(d.key.len(), KEY_LEN);
            assert!(d.key.chars().all(|c| c.is_ascii_alphanumeric()));
            assert_eq!(
                d.config.sha256,
                hex::encode(Sha256::digest(d.key.as_bytes()))
            );
            assert_eq!(d.config.identity, d.identity);
            assert_eq!(d.config.device_type, "temperature_sensor");
            assert_eq!(d.config.roles, ["device"]);
            assert!(d.config.tenant.starts_with("demo-"));
        }
        let mut config = warden_config::WardenConfig::default();
        config.api_keys = a.iter().map(|d| d.config.clone()).collect();
        assert!(
            config.validate().is_ok(),
            "the gateway accepts the demo keys"
        );
    }
}
