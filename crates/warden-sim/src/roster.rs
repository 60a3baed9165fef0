//! The resolved fleet of a scenario: every device with its identity, tenant, credential and
//! source addresses, derived from the scenario and the seed alone — so `warden up --scenario
//! S --seed N` registers exactly the keys `warden simulate --scenario S --seed N` sends.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use warden_config::{ApiKeyConfig, ConfigError, ConfigErrors, RouteConfig, WardenConfig};

use crate::issuer::{SIM_AUDIENCE, SIM_ISSUER, SimIssuer};
use crate::pki::{DEVICE_URI_PREFIX, PkiError, SimPki};
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

/// The MQTT translation rules of a simulated gateway: `(event route, topic pattern, HTTP
/// path)`, every one a `POST`; `{identity}` is the publishing device's own identity (owner
/// scoping). Devices may subscribe to [`MQTT_SUBSCRIBE`] only.
pub const MQTT_RULES: [(&str, &str, &str); 2] = [
    (
        "mqtt_telemetry",
        "devices/{identity}/telemetry",
        "/api/v1/telemetry/{identity}",
    ),
    (
        "mqtt_status",
        "devices/{identity}/status",
        "/api/v1/telemetry/{identity}/status",
    ),
];

/// The topic filter simulated devices may subscribe to (their own commands).
pub const MQTT_SUBSCRIBE: &str = "devices/{identity}/commands";

/// How a simulated device proves who it is: sensors, meters and app users send an API key;
/// industrial gateways a bearer JWT from the simulated identity provider ([`crate::issuer`]);
/// cameras a client certificate from the simulated CA ([`crate::pki`]) over mTLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An API key sent as `X-Api-Key`.
    ApiKey {
        /// Key id in the gateway config (`api_keys[].id`).
        id: String,
        /// The key in clear.
        key: String,
    },
    /// A bearer JWT (`Authorization: Bearer …`) signed by the fleet's issuer for the device's
    /// identity, issued when a run starts.
    Jwt,
    /// A client certificate (mTLS on the gateway's TLS listener) naming the device, issued by
    /// the fleet's CA when a run starts.
    ClientCert,
}

impl Credential {
    /// The API key in clear, for key credentials.
    pub fn api_key(&self) -> Option<&str> {
        match self {
            Credential::ApiKey { key, .. } => Some(key),
            Credential::Jwt | Credential::ClientCert => None,
        }
    }

    /// The gateway's name for the credential's subject (`api_keys[].id`), for key credentials.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            Credential::ApiKey { id, .. } => Some(id),
            Credential::Jwt | Credential::ClientCert => None,
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
                let credential = match t {
                    DeviceType::IndustrialGateway => Credential::Jwt,
                    DeviceType::Camera => Credential::ClientCert,
                    _ => Credential::ApiKey {
                        id: format!("key-{identity}"),
                        key: derive_key(seed, &identity),
                    },
                };
                devices.push(SimDevice {
                    index,
                    credential,
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
            .filter_map(|d| match &d.credential {
                Credential::ApiKey { id, key } => Some(from_json(
                    "api_keys",
                    serde_json::json!({
                        "id": id,
                        "sha256": warden_config::hash_api_key(key),
                        "identity": d.identity,
                        "tenant": d.tenant,
                        "device_type": d.device_type.as_str(),
                        "roles": [if d.device_type.is_device() { "device" } else { "app_user" }],
                    }),
                )),
                Credential::Jwt | Credential::ClientCert => None,
            })
            .collect()
    }

    /// The issuer of the fleet's bearer tokens.
    pub fn issuer(&self) -> SimIssuer {
        SimIssuer::new(self.seed)
    }

    /// The CA of the fleet's client certificates.
    pub fn pki(&self) -> Result<SimPki, PkiError> {
        SimPki::new(self.seed)
    }

    /// Whether some devices authenticate with client certificates (and so need the gateway's
    /// TLS listener).
    pub fn uses_client_certs(&self) -> bool {
        self.devices
            .iter()
            .any(|d| d.credential == Credential::ClientCert)
    }

    /// The header presenting each device's credential (in [`Fleet::devices`] order), with
    /// tokens issued at `now_s` (Unix seconds); `None` for devices with client certificates.
    #[allow(clippy::type_complexity)]
    pub fn credential_headers(
        &self,
        now_s: i64,
    ) -> Result<Vec<Option<(&'static str, String)>>, jsonwebtoken::errors::Error> {
        let issuer = self.issuer();
        self.devices
            .iter()
            .map(|d| match &d.credential {
                Credential::ApiKey { key, .. } => Ok(Some(("x-api-key", key.clone()))),
                Credential::Jwt => Ok(Some((
                    "authorization",
                    format!("Bearer {}", issuer.token(d, now_s)?),
                ))),
                Credential::ClientCert => Ok(None),
            })
            .collect()
    }

    /// A short fingerprint of the fleet (seed, identities and keys), printed by `warden up`
    /// and `warden simulate` so a mismatch is easy to spot.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for d in &self.devices {
            h.update(d.identity.as_bytes());
            h.update(d.credential.api_key().unwrap_or("-").as_bytes());
        }
        h.update(self.issuer().kid().as_bytes());
        hex::encode(&h.finalize()[..6])
    }

    /// [`Fleet::configure`], writing the issuer's JWKS into `jwks_dir`.
    pub fn configure_in(
        &self,
        config: &mut WardenConfig,
        upstream: impl std::fmt::Display,
        jwks_dir: &Path,
    ) -> Result<(), ConfigErrors> {
        if self
            .devices
            .iter()
            .any(|d| matches!(d.credential, Credential::Jwt))
        {
            if let Some(jwt) = &config.identity.jwt
                && jwt.issuer != SIM_ISSUER
            {
                return Err(ConfigError::new(
                        "identity.jwt",
                        format!(
                            "already configured for issuer {}; the simulated fleet's industrial gateways need the simulator's issuer ({SIM_ISSUER}): run the simulation against a gateway without [identity.jwt]",
                            jwt.issuer
                        ),
                    )
                    .into());
            }
            let file = self.issuer().write_jwks(jwks_dir)?;
            config.identity.jwt = Some(from_json(
                "identity.jwt",
                serde_json::json!({
                    "issuer": SIM_ISSUER,
                    "audiences": [SIM_AUDIENCE],
                    "algorithms": ["EdDSA"],
                    "jwks_file": file,
                }),
            )?);
        }
        if self.uses_client_certs() {
            self.configure_mtls(config, jwks_dir)?;
        }
        self.configure_routes_and_keys(config, upstream)
    }

    /// The gateway's TLS listener for the fleet's certificates (on the gateway's port + 363,
    /// 8443 next to 8080, or an ephemeral port when the gateway's is), trusting the fleet's CA,
    /// and a device registry giving certificate identities their tenant, type and roles.
    fn configure_mtls(&self, config: &mut WardenConfig, dir: &Path) -> Result<(), ConfigErrors> {
        let taken = |key: &str| {
            ConfigError::new(
                key,
                "already configured; the simulated fleet's cameras need the simulator's own TLS \
                 listener, CA and registry: run the simulation against a gateway without it",
            )
        };
        // Settings an earlier `configure` wrote are replaced; anyone else's are kept.
        let ours = config.gateway.tls.as_ref().is_none_or(|t| {
            t.client_auth
                .as_ref()
                .is_some_and(|c| c.identity_prefix == DEVICE_URI_PREFIX)
        });
        if !ours {
            return Err(taken("gateway.tls").into());
        }
        let ours = config.identity.registry.as_ref().is_none_or(|r| {
            r.file
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("warden-sim-"))
        });
        if !ours {
            return Err(taken("identity.registry").into());
        }
        let pki_err = |e: PkiError| ConfigError::new("gateway.tls", e.to_string());
        let mut listen = config.gateway.listen;
        listen.set_port(match listen.port() {
            0 => 0,
            p => p.saturating_add(363),
        });
        let files = self
            .pki()
            .and_then(|pki| pki.write_gateway_files(dir, listen.ip()))
            .map_err(pki_err)?;
        let registry = dir.join(format!("warden-sim-{}.registry.toml", self.seed));
        let mut text = String::from(
            "# Written by the simulator: the identities of its devices with client certificates.\n",
        );
        for d in self
            .devices
            .iter()
            .filter(|d| d.credential == Credential::ClientCert)
        {
            text.push_str(&format!(
                "\n[[identity]]\nid = \"{}\"\ntenant = \"{}\"\ndevice_type = \"{}\"\nroles = [\"device\"]\nauth_methods = [\"client_cert\"]\n",
                d.identity,
                d.tenant,
                d.device_type.as_str()
            ));
        }
        crate::write_atomic(&registry, text.as_bytes()).map_err(|e| {
            ConfigError::new(
                "identity.registry.file",
                format!("{}: {e}", registry.display()),
            )
        })?;
        config.gateway.tls = Some(from_json(
            "gateway.tls",
            serde_json::json!({
                "listen": listen,
                "cert_file": files.cert_file,
                "key_file": files.key_file,
                "client_auth": {
                    "ca_files": [files.ca_file],
                    "identity_field": "san_uri",
                    "identity_prefix": DEVICE_URI_PREFIX,
                },
            }),
        )?);
        config.identity.registry = Some(from_json(
            "identity.registry",
            serde_json::json!({ "file": registry, "unknown": "allow" }),
        )?);
        Ok(())
    }

    /// Add what the fleet needs to a gateway config: the simulated backend's routes (to
    /// `upstream`), the fleet's keys, the simulated issuer's JWT settings (its JWKS written to
    /// `$TMPDIR/warden-sim/`), and `trust_forwarded_for` (the simulator sets each device's
    /// source address in `X-Forwarded-For`). Routes and keys of the same name are replaced.
    pub fn configure(
        &self,
        config: &mut WardenConfig,
        upstream: impl std::fmt::Display,
    ) -> Result<(), ConfigErrors> {
        self.configure_in(config, upstream, &std::env::temp_dir().join("warden-sim"))
    }

    fn configure_routes_and_keys(
        &self,
        config: &mut WardenConfig,
        upstream: impl std::fmt::Display,
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

/// The gateway routes of the simulated backend at `upstream` (`host:port`).
pub fn sim_routes(upstream: impl std::fmt::Display) -> Result<Vec<RouteConfig>, ConfigErrors> {
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
            match &d.credential {
                Credential::ApiKey { key, .. } => {
                    assert_ne!(d.device_type, DeviceType::IndustrialGateway);
                    assert_eq!(key.len(), 32);
                    assert!(key.chars().all(|c| c.is_ascii_alphanumeric()));
                }
                Credential::Jwt => assert_eq!(d.device_type, DeviceType::IndustrialGateway),
                Credential::ClientCert => assert_eq!(d.device_type, DeviceType::Camera),
            }
            if d.device_type == DeviceType::MobileApp {
                assert!(!d.owned.is_empty(), "{} owns devices", d.identity);
                assert!(d.owned.iter().all(|o| a.devices[*o].tenant == d.tenant));
            }
        }
    }

    #[test]
    fn the_gateway_config_takes_the_fleet() {
        let fleet = Fleet::new(&scenario(50), 3);
        let with_keys = fleet
            .devices
            .iter()
            .filter(|d| d.credential.api_key().is_some())
            .count();
        assert!(with_keys < 50, "industrial gateways use tokens");
        let mut config = WardenConfig::default();
        let upstream: std::net::SocketAddr = "127.0.0.1:9".parse().expect("addr");
        let dir = tempfile::tempdir().expect("dir");
        fleet
            .configure_in(&mut config, upstream, dir.path())
            .expect("valid config");
        assert_eq!(config.api_keys.len(), with_keys);
        assert_eq!(config.routes.len(), SIM_ROUTES.len());
        assert!(config.gateway.trust_forwarded_for);
        let jwt = config.identity.jwt.clone().expect("jwt configured");
        assert_eq!(jwt.issuer, SIM_ISSUER);
        assert!(jwt.jwks_file.as_ref().is_some_and(|f| f.exists()));
        // Cameras: a TLS listener next to the plain one, the fleet's CA, a registry of them.
        let tls = config.gateway.tls.clone().expect("tls configured");
        assert_eq!(tls.listen.port(), config.gateway.listen.port() + 363);
        let auth = tls.client_auth.expect("client certificates");
        assert_eq!(auth.identity_prefix, DEVICE_URI_PREFIX);
        let registry = config.identity.registry.clone().expect("registry");
        let text = std::fs::read_to_string(&registry.file).expect("registry written");
        let cameras = fleet.of_type(DeviceType::Camera);
        assert!(!cameras.is_empty());
        assert_eq!(text.matches("[[identity]]").count(), cameras.len());
        // Every file it names loads (the gateway would refuse to start otherwise).
        config.validate().expect("valid with the written files");
        // Configuring again (as `up` after a restart would) keeps one listener and registry.
        let mut again = WardenConfig::default();
        fleet
            .configure_in(&mut again, upstream, dir.path())
            .expect("fresh config");
        // Configuring twice replaces rather than duplicates.
        fleet
            .configure_in(&mut config, upstream, dir.path())
            .expect("again");
        assert_eq!(config.api_keys.len(), with_keys);
        let d = &fleet.devices[0];
        let k = &config.api_keys[0];
        assert_eq!(k.identity, d.identity);
        assert_eq!(
            Some(k.sha256.as_str()),
            d.credential
                .api_key()
                .map(warden_config::hash_api_key)
                .as_deref()
        );
        assert_eq!(k.device_type, d.device_type.as_str());
        // A gateway already trusting another issuer is not silently re-pointed.
        let mut other = config.clone();
        if let Some(j) = other.identity.jwt.as_mut() {
            j.issuer = "https://login.example.com".into();
        }
        let err = fleet
            .configure_in(&mut other, upstream, dir.path())
            .expect_err("other issuer");
        assert!(err.to_string().contains("identity.jwt"), "{err}");
    }
}
