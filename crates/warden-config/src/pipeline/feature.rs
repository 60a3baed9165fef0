//! `[[feature]]`: one number per window key and sample.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use warden_event::{AuthResult, Outcome, Reason};

use crate::ConfigError;

/// A feature, selected by `type`. The common aggregates (`count`, `rate`, `sum`, `mean`,
/// `ratio`, `distinct`, `percentile`) are computed on a fast incremental path; `sql` takes a
/// DataFusion SQL aggregate expression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeatureConfig {
    /// Events in the window (matching `filter`).
    Count(CountFeature),
    /// Events per second over the window (matching `filter`).
    Rate(CountFeature),
    /// Sum of a numeric field over the window's events (matching `filter`).
    Sum(FieldFeature),
    /// Mean of a numeric field over the window's events (matching `filter`); absent when
    /// no event matches.
    Mean(FieldFeature),
    /// Share of the window's events that match `filter`; absent when the window is empty.
    Ratio(RatioFeature),
    /// Share of events whose status is at least `min_status`.
    ErrorRatio(ErrorRatioFeature),
    /// Share of events the gateway refused (auth, RBAC, throttling, quarantine, invalid).
    DeniedRatio(CountFeature),
    /// Distinct values of a field (HyperLogLog, exact below 64 values).
    Distinct(FieldFeature),
    /// A quantile of a numeric field (relative-error sketch, 1 %).
    Percentile(PercentileFeature),
    /// A DataFusion SQL aggregate expression over the window's events.
    Sql(SqlFeature),
    /// The hour of the day of the sample (the end of its window, in event time, UTC) on the
    /// unit circle: `sin` or `cos` of 2π·hour/24, so 23:59 and 00:00 are neighbours. For ML
    /// detectors: a key's pace or route mix at an hour its device type is never like that.
    HourOfDay(HourOfDayFeature),
}

/// `hour_of_day`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HourOfDayFeature {
    /// Feature name, referenced by detectors and shown in alert evidence.
    pub name: String,
    /// Window whose samples it is read with (its value depends on the sample's time only).
    pub window: String,
    /// `sin` or `cos` of the hour's angle (a model needs both to place every hour).
    pub component: Cyclic,
}

/// A component of an angle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Cyclic {
    Sin,
    Cos,
}

impl Cyclic {
    /// The component of the hour of the day of `at_ns` (ns since the epoch, UTC).
    pub fn of_hour(self, at_ns: i64) -> f64 {
        const DAY_NS: i64 = 86_400_000_000_000;
        let angle = at_ns.rem_euclid(DAY_NS) as f64 / DAY_NS as f64 * std::f64::consts::TAU;
        match self {
            Cyclic::Sin => angle.sin(),
            Cyclic::Cos => angle.cos(),
        }
    }
}

/// `count`, `rate`, `denied_ratio`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CountFeature {
    /// Feature name, referenced by detectors and shown in alert evidence.
    pub name: String,
    /// Window the feature is computed over.
    pub window: String,
    /// Only events matching this are counted (`count`, `rate`; not `denied_ratio`).
    #[serde(default)]
    pub filter: Option<FilterConfig>,
}

/// `sum`, `mean`, `distinct`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldFeature {
    /// Feature name, referenced by detectors and shown in alert evidence.
    pub name: String,
    /// Window the feature is computed over.
    pub window: String,
    /// Event field aggregated (`sum`/`mean`: a numeric field).
    pub field: Field,
    /// Only events matching this are aggregated.
    #[serde(default)]
    pub filter: Option<FilterConfig>,
}

/// `ratio`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RatioFeature {
    /// Feature name, referenced by detectors and shown in alert evidence.
    pub name: String,
    /// Window the feature is computed over.
    pub window: String,
    /// The events counted in the numerator (the denominator is every event of the window).
    pub filter: FilterConfig,
}

/// `error_ratio`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorRatioFeature {
    /// Feature name, referenced by detectors and shown in alert evidence.
    pub name: String,
    /// Window the feature is computed over.
    pub window: String,
    /// Lowest status counted as an error (default 500).
    #[serde(default)]
    pub min_status: Option<u16>,
}

/// `percentile`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PercentileFeature {
    /// Feature name, referenced by detectors and shown in alert evidence.
    pub name: String,
    /// Window the feature is computed over.
    pub window: String,
    /// Numeric event field.
    pub field: Field,
    /// Quantile in [0, 1], e.g. 0.99.
    pub quantile: f64,
    /// Only events matching this are included.
    #[serde(default)]
    pub filter: Option<FilterConfig>,
}

/// `sql`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlFeature {
    /// Feature name, referenced by detectors and shown in alert evidence.
    pub name: String,
    /// Window the feature is computed over.
    pub window: String,
    /// A SQL expression over aggregates of the window's events, e.g.
    /// `count(*) filter (where status >= 500) / count(*)`. Columns are those of the event
    /// table (see `warden query`); aggregates are `count`, `sum`, `avg`, `min`, `max`,
    /// `count(distinct …)`/`approx_distinct`, `approx_percentile_cont`, `approx_median`, each
    /// with an optional `filter (where …)`. Aggregates are floating-point numbers, so `/` is a
    /// real division.
    pub expr: String,
}

/// Which events an aggregate includes; every given condition must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Lowest status matched (inclusive).
    #[serde(default)]
    pub min_status: Option<u16>,
    /// Highest status matched (inclusive).
    #[serde(default)]
    pub max_status: Option<u16>,
    /// Gateway outcomes matched, e.g. `["denied_auth"]`.
    #[serde(default)]
    pub outcome: Vec<Outcome>,
    /// Authentication results matched, e.g. `["failed"]`.
    #[serde(default)]
    pub auth_result: Vec<AuthResult>,
    /// Request methods matched, e.g. `["GET"]`.
    #[serde(default)]
    pub method: Vec<String>,
    /// Routes matched.
    #[serde(default)]
    pub route: Vec<String>,
    /// Why the gateway refused the request, e.g. `["route", "path", "rbac"]` (`none`: not
    /// refused).
    #[serde(default)]
    pub reason: Vec<Reason>,
    /// Whether a filter on status or outcome also matches Warden's own enforcement: requests
    /// refused by a quarantine, a throttle, a rate limit or load shedding. Off by default: a
    /// 403 of a quarantine or a 429 of a throttle is what Warden did, not what the client did,
    /// and counting it would flag a device again for the refusals of its own quarantine (or
    /// of another subject's, e.g. its address). A filter listing `reason`s matches exactly
    /// those.
    #[serde(default)]
    pub include_enforced: bool,
}

/// An event field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Identity,
    Tenant,
    DeviceType,
    ClientIp,
    Method,
    Route,
    Path,
    UserAgent,
    Status,
    BytesIn,
    BytesOut,
    LatencyUs,
    AuthResult,
    /// The gateway's decision (`allowed`, `denied_auth`, …), column `decision`.
    Outcome,
    /// Why the gateway refused the request (`none`, `auth`, `quarantine`…).
    Reason,
    /// The shape of the query string (`page=int&sort=str`).
    Query,
    /// The resource a request read or wrote: its path and its query (by the query's keyed
    /// hash). For distinct counts: `?page=1`, `?page=2`… are distinct resources.
    Resource,
}

impl Field {
    /// Name as written in pipelines.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Identity => "identity",
            Field::Tenant => "tenant",
            Field::DeviceType => "device_type",
            Field::ClientIp => "client_ip",
            Field::Method => "method",
            Field::Route => "route",
            Field::Path => "path",
            Field::UserAgent => "user_agent",
            Field::Status => "status",
            Field::BytesIn => "bytes_in",
            Field::BytesOut => "bytes_out",
            Field::LatencyUs => "latency_us",
            Field::AuthResult => "auth_result",
            Field::Outcome => "outcome",
            Field::Reason => "reason",
            Field::Query => "query",
            Field::Resource => "resource",
        }
    }

    /// Whether the field is a number.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            Field::Status | Field::BytesIn | Field::BytesOut | Field::LatencyUs
        )
    }
}

impl FilterConfig {
    /// Whether the filter matches every event.
    pub fn is_empty(&self) -> bool {
        self == &FilterConfig::default()
    }

    /// Whether enforcement refusals are left out (see [`FilterConfig::include_enforced`]):
    /// the filter selects by status or outcome, lists no reason, and does not ask for them.
    pub fn excludes_enforced(&self) -> bool {
        let by_result =
            self.min_status.is_some() || self.max_status.is_some() || !self.outcome.is_empty();
        by_result && self.reason.is_empty() && !self.include_enforced
    }

    fn check(&self, at: &str, errs: &mut Vec<ConfigError>) {
        if let (Some(lo), Some(hi)) = (self.min_status, self.max_status)
            && lo > hi
        {
            errs.push(ConfigError::new(
                format!("{at}.max_status"),
                "must be at least min_status",
            ));
        }
    }
}

impl FeatureConfig {
    pub fn name(&self) -> &str {
        match self {
            FeatureConfig::Count(c) | FeatureConfig::Rate(c) | FeatureConfig::DeniedRatio(c) => {
                &c.name
            }
            FeatureConfig::Sum(c) | FeatureConfig::Mean(c) | FeatureConfig::Distinct(c) => &c.name,
            FeatureConfig::Ratio(c) => &c.name,
            FeatureConfig::ErrorRatio(c) => &c.name,
            FeatureConfig::Percentile(c) => &c.name,
            FeatureConfig::Sql(c) => &c.name,
            FeatureConfig::HourOfDay(c) => &c.name,
        }
    }

    pub fn window(&self) -> &str {
        match self {
            FeatureConfig::Count(c) | FeatureConfig::Rate(c) | FeatureConfig::DeniedRatio(c) => {
                &c.window
            }
            FeatureConfig::Sum(c) | FeatureConfig::Mean(c) | FeatureConfig::Distinct(c) => {
                &c.window
            }
            FeatureConfig::Ratio(c) => &c.window,
            FeatureConfig::ErrorRatio(c) => &c.window,
            FeatureConfig::Percentile(c) => &c.window,
            FeatureConfig::Sql(c) => &c.window,
            FeatureConfig::HourOfDay(c) => &c.window,
        }
    }

    /// The `type` as written in pipelines.
    pub fn type_name(&self) -> &'static str {
        match self {
            FeatureConfig::Count(_) => "count",
            FeatureConfig::Rate(_) => "rate",
            FeatureConfig::Sum(_) => "sum",
            FeatureConfig::Mean(_) => "mean",
            FeatureConfig::Ratio(_) => "ratio",
            FeatureConfig::ErrorRatio(_) => "error_ratio",
            FeatureConfig::DeniedRatio(_) => "denied_ratio",
            FeatureConfig::Distinct(_) => "distinct",
            FeatureConfig::Percentile(_) => "percentile",
            FeatureConfig::Sql(_) => "sql",
            FeatureConfig::HourOfDay(_) => "hour_of_day",
        }
    }

    pub(crate) fn check(&self, i: usize, errs: &mut Vec<ConfigError>) {
        let at = |k: &str| format!("feature[{i}].{k}");
        if self.name().trim().is_empty() {
            errs.push(ConfigError::new(at("name"), "must not be empty"));
        }
        match self {
            FeatureConfig::Count(c) | FeatureConfig::Rate(c) => {
                if let Some(f) = &c.filter {
                    f.check(&at("filter"), errs);
                }
            }
            FeatureConfig::DeniedRatio(c) => {
                if c.filter.is_some() {
                    errs.push(ConfigError::new(
                        at("filter"),
                        "does not apply to `denied_ratio` (use `type = \"ratio\"`)",
                    ));
                }
            }
            FeatureConfig::Sum(c) | FeatureConfig::Mean(c) => {
                if !c.field.is_numeric() {
                    errs.push(ConfigError::new(
                        at("field"),
                        format!(
                            "`{}` is not numeric (status, bytes_in, bytes_out, latency_us)",
                            c.field.as_str()
                        ),
                    ));
                }
                if let Some(f) = &c.filter {
                    f.check(&at("filter"), errs);
                }
            }
            FeatureConfig::Distinct(c) => {
                if let Some(f) = &c.filter {
                    f.check(&at("filter"), errs);
                }
            }
            FeatureConfig::Ratio(c) => {
                if c.filter.is_empty() {
                    errs.push(ConfigError::new(
                        at("filter"),
                        "must select some events (a ratio of everything is 1)",
                    ));
                }
                c.filter.check(&at("filter"), errs);
            }
            FeatureConfig::ErrorRatio(_) | FeatureConfig::HourOfDay(_) => {}
            FeatureConfig::Percentile(c) => {
                if !c.field.is_numeric() {
                    errs.push(ConfigError::new(
                        at("field"),
                        format!("`{}` is not numeric", c.field.as_str()),
                    ));
                }
                if !(0.0..=1.0).contains(&c.quantile) {
                    errs.push(ConfigError::new(at("quantile"), "must be in [0, 1]"));
                }
                if let Some(f) = &c.filter {
                    f.check(&at("filter"), errs);
                }
            }
            FeatureConfig::Sql(c) => {
                if c.expr.trim().is_empty() {
                    errs.push(ConfigError::new(at("expr"), "must not be empty"));
                }
            }
        }
    }
}

impl ErrorRatioFeature {
    /// Lowest status counted as an error.
    pub fn error_status(&self) -> u16 {
        self.min_status.unwrap_or(500)
    }
}
