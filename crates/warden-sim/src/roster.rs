//! The resolved fleet of a scenario: every device with its identity, tenant, credential and
//! source addresses, derived from the scenario and the seed alone — so `warden up --scenario
//! S --seed N` registers exactly the keys `warden simulate --scenario S --seed N` sends.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use warden_config::{ApiKeyConfig, ConfigError, ConfigErrors, RouteConfig, WardenConfig};

use crate::{DeviceType, ScenarioConfig, mix_seed};

/// Tenant names, used in turn (`tenant-N` beyond them).
const TENANTS: [&str; 8] = [
    "acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell",
];

/// Routes the simulated backend serves, as the gateway routes them: `(name, prefix, methods)`.
/// `api_v1` takes every other `/api/v1` path (the backend answers `404`).
pub const SIM_ROUTES: [(&str, &str, &[&str]); 9] = [
    ("telemetry", "/api/v1/telemetry", &["POST"]),
    ("config", "/api/v1/config", &["GET"]),
    ("firmware", "/api/v1/firmware", &["GET"]),
    ("media", "/api/v1/media", &["GET", "POST"]),
    ("meters", "/api/v1/meters", &["GET", "POST"]),
    ("ingest", "/api/v1/ingest", &["GET", "POST"]),
    ("app", "/api/v1/app", &["GET", "POST"]),
    ("export", "/api/v1/export", &["GET"]),
    ("api_v1", "/api/v1", &[]),
];

/// How a simulated device proves who it is. API keys are what the gateway supports today;
/// JWTs and client certificates become variants here (with what they need to register at
/// the gateway and to present on a request) when the gateway supports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An API key sent as `X-Api-Key`.
    ApiKey {
        /// Key id in the gateway config (`api_keys[].id`).
        id: String,
        /// The key in clear.
        key: String,
    },
}

impl Credential {
    /// The header that presents this credential on a request.
    pub fn header(&self) -> (&'static str, &str) {
        match self {
            Credential::ApiKey { key, .. } => ("x-api-key", key),
        }
    }
}

/// One simulated device (or app user).
#[derive(Debug, Clone, PartialEq)]
pub struct SimDevice {
    /// Position in [`Fleet::devices`].
    pub index: usize,
    /// Identity, e.g. `sensor-00012`.
    pub identity: String,
    pub device_type: DeviceType,
    pub tenant: String,
    pub credential: Credential,
    /// Source addresses it sends from: the first is its usual one (app users also use a
    /// second, their carrier's).
    pub ips: Vec<IpAddr>,
    /// App users: indices of the devices they own.
    pub owned: Vec<usize>,
}

/// The fleet of a scenario with a seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    pub seed: u64,
    pub devices: Vec<SimDevice>,
    /// Indices of the devices of each type.
    pub by_type: BTreeMap<DeviceType, Vec<usize>>,
}

impl Fleet {
    /// Resolve the fleet of `scenario` with `seed`.
    pub fn new(scenario: &ScenarioConfig, seed: u64) -> Self {
        let spec = &scenario.fleet;
        let tenants = spec.tenants.max(1);
        let mut devices = Vec::with_capacity(spec.devices);
        let mut by_type: BTreeMap<DeviceType, Vec<usize>> = BTreeMap::new();
        for (t, n) in spec.mix.counts(spec.devices) {
            for k in 0..n {
                let index = devices.len();
                let identity = format!("{}-{k:05}", t.prefix());
                let mut ips = vec![IpAddr::V4(Ipv4Addr::from(0x0A00_0001 + index as u32))];
                if t == DeviceType::MobileApp {
                    ips.push(IpAddr::V4(Ipv4Addr::from(0x6440_0001 + index as u32)));
                }
                devices.push(SimDevice {
                    index,
                    credential: Credential::ApiKey {
                        id: format!("key-{identity}"),
                        key: derive_key(seed, &identity),
                    },
                    identity,
                    device_type: t,
                    tenant: tenant_name(index % tenants),
                    ips,
                    owned: Vec::new(),
                });
                by_type.entry(t).or_default().push(index);
            }
        }
        // App users own one to three devices of their tenant.
        let mut rng = StdRng::seed_from_u64(mix_seed(seed, 0x57ED));
        let mut by_tenant: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for d in devices.iter().filter(|d| d.device_type.is_device()) {
            by_tenant.entry(d.tenant.clone()).or_default().push(d.index);
        }
        for d in devices.iter_mut() {
            if d.device_type != DeviceType::MobileApp {
                continue;
            }
            if let Some(pool) = by_tenant.get(&d.tenant) {
                let n = rng.random_range(1..=3usize).min(pool.len());
                for _ in 0..n {
                    d.owned.push(pool[rng.random_range(0..pool.len())]);
                }
                d.owned.sort_unstable();
                d.owned.dedup();
            }
        }
        Self {
            seed,
            devices,
            by_type,
        }
    }

    /// The devices of type `t`.
    pub fn of_type(&self, t: DeviceType) -> &[usize] {
        self.by_type.get(&t).map_or(&[], Vec::as_slice)
    }

    /// The gateway's entries for the fleet's credentials.
    pub fn api_keys(&self) -> Result<Vec<ApiKeyConfig>, ConfigErrors> {
        self.devices
            .iter()
            .map(|d| match &d.credential {
                Credential::ApiKey { id, key } => from_json(
                    "api_keys",
                    serde_json::json!({
                        "id": id,
                        "sha256": warden_config::hash_api_key(key),
                        "identity": d.identity,
                        "tenant": d.tenant,
                        "device_type": d.device_type.as_str(),
                        "roles": [if d.device_type.is_device() { "device" } else { "app_user" }],
                    }),
                ),
            })
            .collect()
    }

    /// A short fingerprint of the fleet (seed, identities and keys), printed by `warden up`
    /// and `warden simulate` so a mismatch is easy to spot.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for d in &self.devices {
            h.update(d.identity.as_bytes());
            h.update(d.credential.header().1.as_bytes());
        }
        hex::encode(&h.finalize()[..6])
    }

    /// Add what the fleet needs to a gateway config: the simulated backend's routes (to
    /// `upstream`), the fleet's keys, and `trust_forwarded_for` (the simulator sets each
    /// device's source address in `X-Forwarded-For`). Routes of the same name are replaced.
    pub fn configure(
        &self,
        config: &mut WardenConfig,
        upstream: SocketAddr,
    ) -> Result<(), ConfigErrors> {
        let routes = sim_routes(upstream)?;
        config.routes.retain(|r| {
            !routes
                .iter()
                .any(|s| s.name == r.name || s.prefix == r.prefix)
        });
        config.routes.extend(routes);
        let keys = self.api_keys()?;
        config
            .api_keys
            .retain(|k| !keys.iter().any(|s| s.id == k.id || s.sha256 == k.sha256));
        config.api_keys.extend(keys);
        config.gateway.trust_forwarded_for = true;
        config.validate()
    }
}

/// The gateway routes of the simulated backend at `upstream`.
pub fn sim_routes(upstream: SocketAddr) -> Result<Vec<RouteConfig>, ConfigErrors> {
    SIM_ROUTES
        .iter()
        .map(|(name, prefix, methods)| {
            from_json(
                "routes",
                serde_json::json!({
                    "name": name,
                    "prefix": prefix,
                    "upstream": format!("http://{upstream}"),
                    "timeout_ms": 10_000,
                    "methods": methods,
                }),
            )
        })
        .collect()
}

fn from_json<T: serde::de::DeserializeOwned>(
    key: &str,
    value: serde_json::Value,
) -> Result<T, ConfigErrors> {
    serde_json::from_value(value)
        .map_err(|e| ConfigError::new(key, format!("simulated fleet entry: {e}")).into())
}

/// Tenant `i`.
pub fn tenant_name(i: usize) -> String {
    match TENANTS.get(i) {
        Some(t) => (*t).to_string(),
        None => format!("tenant-{i}"),
    }
}

/// The API key of `identity` in a fleet seeded with `seed`: 32 letters and digits from
/// SHA-256 of both, so a device's key does not depend on the fleet's size or order.
pub fn derive_key(seed: u64, identity: &str) -> String {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let digest = Sha256::digest(format!("warden-sim|{seed}|{identity}").as_bytes());
    digest
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn scenario(devices: usize) -> ScenarioConfig {
        let mut s = crate::builtin_scenario("benign")
            .expect("built in")
            .expect("valid");
        s.fleet.devices = devices;
        s
    }

    #[test]
    fn fleets_are_deterministic_and_keys_do_not_depend_on_size() {
        let a = Fleet::new(&scenario(200), 7);
        assert_eq!(a, Fleet::new(&scenario(200), 7));
        assert_ne!(a.fingerprint(), Fleet::new(&scenario(200), 8).fingerprint());
        let big = Fleet::new(&scenario(400), 7);
        let key = |f: &Fleet, id: &str| {
            f.devices
                .iter()
                .find(|d| d.identity == id)
                .map(|d| d.credential.clone())
        };
        assert_eq!(key(&a, "sensor-00003"), key(&big, "sensor-00003"));
        let ids: HashSet<&str> = a.devices.iter().map(|d| d.identity.as_str()).collect();
        let ips: HashSet<IpAddr> = a.devices.iter().flat_map(|d| d.ips.clone()).collect();
        assert_eq!(ids.len(), 200);
        assert_eq!(ips.len(), 200 + a.of_type(DeviceType::MobileApp).len());
        for d in &a.devices {
            let Credential::ApiKey { key, .. } = &d.credential;
            assert_eq!(key.len(), 32);
            assert!(key.chars().all(|c| c.is_ascii_alphanumeric()));
            if d.device_type == DeviceType::MobileApp {
                assert!(!d.owned.is_empty(), "{} owns devices", d.identity);
                assert!(d.owned.iter().all(|o| a.devices[*o].tenant == d.tenant));
            }
        }
    }

    #[test]
    fn the_gateway_config_takes_the_fleet() {
        let fleet = Fleet::new(&scenario(50), 3);
        let mut config = WardenConfig::default();
        let upstream: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        fleet
            .configure(&mut config, upstream)
            .expect("valid config");
        assert_eq!(config.api_keys.len(), 50);
        assert_eq!(config.routes.len(), SIM_ROUTES.len());
        assert!(config.gateway.trust_forwarded_for);
        // Configuring twice replaces rather than duplicates.
        fleet.configure(&mut config, upstream).expect("again");
        assert_eq!(config.api_keys.len(), 50);
        let d = &fleet.devices[0];
        let k = &config.api_keys[0];
        assert_eq!(k.identity, d.identity);
        assert_eq!(
            k.sha256,
            warden_config::hash_api_key(d.credential.header().1)
        );
        assert_eq!(k.device_type, d.device_type.as_str());
    }
}
