//! Typed access to the columns of a request-event batch the engine reads row by row (keys,
//! peers, novelty fields, time). Aggregate inputs are evaluated column-wise instead (see
//! `feature.rs`).

use arrow::array::{Array, AsArray, DictionaryArray, StringArray};
use arrow::datatypes::{DataType, Int32Type, TimestampNanosecondType};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use warden_config::{NoveltyField, WindowKey};

/// A string column, plain or dictionary-encoded.
#[derive(Debug, Clone, Copy)]
pub enum StrCol<'a> {
    Plain(&'a StringArray),
    Dict(&'a DictionaryArray<Int32Type>, &'a StringArray),
}

impl<'a> StrCol<'a> {
    fn read(batch: &'a RecordBatch, name: &str) -> Result<Self, ArrowError> {
        let col = batch
            .column_by_name(name)
            .ok_or_else(|| ArrowError::SchemaError(format!("missing column {name}")))?;
        let wrong = || {
            ArrowError::SchemaError(format!(
                "column {name} is {}, expected Utf8 or Dictionary(Int32, Utf8)",
                col.data_type()
            ))
        };
        match col.data_type() {
            DataType::Utf8 => Ok(StrCol::Plain(col.as_string::<i32>())),
            DataType::Dictionary(k, v) if **k == DataType::Int32 && **v == DataType::Utf8 => {
                let d = col.as_dictionary::<Int32Type>();
                let values = d.values().as_string_opt::<i32>().ok_or_else(wrong)?;
                Ok(StrCol::Dict(d, values))
            }
            _ => Err(wrong()),
        }
    }

    /// The value of row `i` (`""` when null).
    pub fn value(&self, i: usize) -> &'a str {
        match self {
            StrCol::Plain(a) => {
                if a.is_null(i) {
                    ""
                } else {
                    a.value(i)
                }
            }
            StrCol::Dict(d, values) => {
                if d.is_null(i) {
                    return "";
                }
                let k = d.keys().value(i);
                usize::try_from(k)
                    .ok()
                    .filter(|k| *k < values.len())
                    .map_or("", |k| values.value(k))
            }
        }
    }

    pub fn is_dict(&self) -> bool {
        matches!(self, StrCol::Dict(..))
    }

    /// Dictionary key of row `i` and the dictionary size, for per-batch caches.
    pub fn dict_key(&self, i: usize) -> Option<(usize, usize)> {
        match self {
            StrCol::Plain(_) => None,
            StrCol::Dict(d, values) => {
                if d.is_null(i) {
                    return None;
                }
                let k = usize::try_from(d.keys().value(i)).ok()?;
                (k < values.len()).then_some((k, values.len()))
            }
        }
    }
}

/// The columns the engine reads row by row.
pub struct Columns<'a> {
    pub ts: &'a [i64],
    pub identity: StrCol<'a>,
    pub tenant: StrCol<'a>,
    pub device_type: StrCol<'a>,
    pub route: StrCol<'a>,
    pub client_ip: StrCol<'a>,
    pub method: StrCol<'a>,
    pub path: StrCol<'a>,
    pub user_agent: StrCol<'a>,
}

impl<'a> Columns<'a> {
    pub fn read(batch: &'a RecordBatch) -> Result<Self, ArrowError> {
        let ts = batch
            .column_by_name("ts")
            .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
            .ok_or_else(|| ArrowError::SchemaError("missing column ts (timestamp ns)".into()))?;
        if ts.null_count() > 0 {
            return Err(ArrowError::InvalidArgumentError("null ts".into()));
        }
        Ok(Self {
            ts: ts.values(),
            identity: StrCol::read(batch, "identity")?,
            tenant: StrCol::read(batch, "tenant")?,
            device_type: StrCol::read(batch, "device_type")?,
            route: StrCol::read(batch, "route")?,
            client_ip: StrCol::read(batch, "client_ip")?,
            method: StrCol::read(batch, "method")?,
            path: StrCol::read(batch, "path")?,
            user_agent: StrCol::read(batch, "user_agent")?,
        })
    }

    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// The column a window is keyed by (`identity_route` reads identity and route).
    pub fn key_column(&self, key: WindowKey) -> StrCol<'a> {
        match key {
            WindowKey::Identity | WindowKey::IdentityRoute => self.identity,
            WindowKey::Tenant => self.tenant,
            WindowKey::Route => self.route,
            WindowKey::ClientIp => self.client_ip,
        }
    }

    pub fn novelty_column(&self, field: NoveltyField) -> StrCol<'a> {
        match field {
            NoveltyField::Route => self.route,
            NoveltyField::ClientIp => self.client_ip,
            NoveltyField::UserAgent => self.user_agent,
            NoveltyField::Method => self.method,
            NoveltyField::Path => self.path,
        }
    }
}
