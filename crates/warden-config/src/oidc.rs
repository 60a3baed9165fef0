//! Console sign-in with OpenID Connect (`[dashboard.oidc]`): the authorization code flow with
//! PKCE against the organisation's identity provider, its groups (or roles) mapped to the
//! console's roles.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// An OpenID Connect provider operators sign in with (Keycloak, Entra ID, Okta, Dex, Google…).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer, an `https://` URL; its `/.well-known/openid-configuration` names the
    /// authorization, token and JWKS endpoints, and ID tokens must carry it as `iss`.
    pub issuer: String,
    /// The console's client id at the provider (ID tokens must name it in `aud`).
    pub client_id: String,
    /// Environment variable holding the client secret (confidential clients)…
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// …or a file holding it; neither for a public client (PKCE alone).
    #[serde(default)]
    pub client_secret_file: Option<String>,
    /// The console's callback as registered at the provider: the console's public base URL
    /// followed by `/oidc/callback` (e.g. `https://console.example.com/oidc/callback`).
    pub redirect_url: String,
    /// Scopes requested (`openid` is always sent).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Claim naming the operator in audit records and releases (falls back to `email`, then
    /// `sub`).
    #[serde(default = "default_name_claim")]
    pub name_claim: String,
    /// Claim listing the user's groups or roles: a string or an array of strings; a dotted
    /// path reaches into objects (`realm_access.roles` for Keycloak).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Values of `roles_claim` that make the user an `operator` (release, quarantine).
    #[serde(default)]
    pub operator_values: Vec<String>,
    /// Values that make the user a `viewer` (read only). Anyone with neither is refused.
    #[serde(default)]
    pub viewer_values: Vec<String>,
    /// PEM file of the CAs that may sign the provider's TLS certificate (default: the web
    /// PKI roots).
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Clock skew tolerated on `exp`, `iat` and `nbf`, seconds.
    #[serde(default = "default_leeway")]
    pub leeway_s: u64,
    /// Label of the sign-in button.
    #[serde(default = "default_display_name")]
    pub display_name: String,
    /// Timeout of each request to the provider, milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into(), "email".into()]
}
fn default_name_claim() -> String {
    "preferred_username".into()
}
fn default_roles_claim() -> String {
    "groups".into()
}
fn default_leeway() -> u64 {
    60
}
fn default_display_name() -> String {
    "single sign-on".into()
}
fn default_timeout() -> u64 {
    10_000
}

impl OidcConfig {
    pub(crate) fn check(&self, errs: &mut Vec<ConfigError>) {
        let at = |k: &str| format!("dashboard.oidc.{k}");
        if !self.issuer.starts_with("https://") || self.issuer.len() <= "https://".len() {
            errs.push(ConfigError::new(at("issuer"), "must be an https:// URL"));
        }
        if self.client_id.trim().is_empty() {
            errs.push(ConfigError::new(at("client_id"), "must not be empty"));
        }
        if self.client_secret_env.is_some() && self.client_secret_file.is_some() {
            errs.push(ConfigError::new(
                at("client_secret_env"),
                "set at most one of client_secret_env and client_secret_file",
            ));
        }
        let callback = self
            .redirect_url
            .strip_prefix("https://")
            .or_else(|| self.redirect_url.strip_prefix("http://"))
            .and_then(|rest| rest.split_once('/'))
            .is_some_and(|(host, path)| !host.is_empty() && path == "oidc/callback");
        if !callback {
            errs.push(ConfigError::new(
                at("redirect_url"),
                "must be the console's base URL followed by /oidc/callback",
            ));
        }
        if self.operator_values.is_empty() && self.viewer_values.is_empty() {
            errs.push(ConfigError::new(
                at("operator_values"),
                "name at least one group or role in operator_values or viewer_values \
                 (otherwise nobody could sign in)",
            ));
        }
        if self.roles_claim.trim().is_empty() || self.name_claim.trim().is_empty() {
            errs.push(ConfigError::new(
                at("roles_claim"),
                "roles_claim and name_claim must not be empty",
            ));
        }
        if self.timeout_ms == 0 {
            errs.push(ConfigError::new(at("timeout_ms"), "must be at least 1"));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::WardenConfig;

    #[test]
    fn the_example_loads_and_bad_settings_are_all_reported() {
        let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs/examples/console-oidc.toml");
        let text = std::fs::read_to_string(example).expect("example");
        let config = WardenConfig::from_toml(&text).expect("the example is valid");
        let oidc = config.dashboard.oidc.expect("oidc");
        assert_eq!(oidc.roles_claim, "realm_access.roles");

        let bad = r#"
            [dashboard.oidc]
            issuer = "http://sso.example"
            client_id = ""
            client_secret_env = "A"
            client_secret_file = "/b"
            redirect_url = "https://console.example/elsewhere"
        "#;
        let errs = WardenConfig::from_toml(bad)
            .expect_err("refused")
            .to_string();
        for key in [
            "dashboard.oidc.issuer",
            "dashboard.oidc.client_id",
            "dashboard.oidc.client_secret_env",
            "dashboard.oidc.redirect_url",
            "dashboard.oidc.operator_values",
        ] {
            assert!(errs.contains(key), "{key} missing from: {errs}");
        }
    }
}
