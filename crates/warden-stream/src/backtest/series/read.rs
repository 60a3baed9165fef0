//! Reading a metric series from CSV with the `csv` crate: quoted fields, a UTF-8 BOM, a header
//! or none, `,` (or `;` or tab) separated, missing and non-finite values (skipped and
//! reported), optional labels.

use std::sync::Arc;

use arrow::array::{Array, AsArray, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit, TimestampNanosecondType};

use super::SeriesError;
use super::quality::Quality;

/// Header names accepted for each column (case-insensitive).
const TIME_NAMES: &[&str] = &["timestamp", "time", "ts", "datetime", "date"];
const VALUE_NAMES: &[&str] = &["value", "values", "val", "y"];
const LABEL_NAMES: &[&str] = &["label", "labels", "is_anomaly", "anomaly"];
/// Cells read as a missing value, like an empty one (pandas, R and SQL exports).
const MISSING: &[&str] = &["", "na", "n/a", "null", "none", "nil", "-"];

/// One usable row of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Line of the row in the file (1-based).
    pub line: usize,
    /// The timestamp as written in the file.
    pub timestamp: String,
    /// The timestamp, nanoseconds since the Unix epoch (UTC when the text has no offset).
    pub at: i64,
    pub value: f64,
    /// The row's label (`label` / `is_anomaly` column), if the file has one.
    pub label: Option<bool>,
}

/// A series read from a file, in time order, with what was found on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The file's name, as given.
    pub name: String,
    /// Usable rows, sorted by time (stable: rows with the same timestamp keep file order).
    pub points: Vec<Point>,
    /// Whether the file has a label column.
    pub labelled: bool,
    pub quality: Quality,
}

/// Where the columns are.
struct Columns {
    time: usize,
    value: usize,
    label: Option<usize>,
    width: usize,
}

fn find(header: &[String], names: &[&str]) -> Option<usize> {
    names
        .iter()
        .find_map(|n| header.iter().position(|h| h.eq_ignore_ascii_case(n)))
}

fn is_missing(cell: &str) -> bool {
    MISSING.iter().any(|m| cell.eq_ignore_ascii_case(m))
}

/// Read a series from the bytes of a CSV file; `name` names the file in errors.
///
/// A first row whose value cell is not a number is a header naming the columns (`timestamp`,
/// `value` and optionally `label`, with the aliases of [`TIME_NAMES`] etc.); otherwise the
/// columns are `timestamp,value[,label]`. Rows are sorted by time.
pub fn read_series(name: &str, bytes: &[u8]) -> Result<Series, SeriesError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let row_err = |line: usize, reason: String| SeriesError::Row {
        file: name.to_string(),
        line,
        reason,
    };
    let delimiter = delimiter(bytes);
    // `;`-separated exports write decimal commas.
    let number = |cell: &str| -> Option<f64> {
        match cell.parse() {
            Ok(v) => Some(v),
            Err(_) if delimiter == b';' && !cell.contains('.') => {
                cell.replacen(',', ".", 1).parse().ok()
            }
            Err(_) => None,
        }
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(bytes);
    let mut records = reader.records();
    let mut quality = Quality::default();
    let mut pending = None;
    let columns = loop {
        let Some(first) = records.next() else {
            return Err(SeriesError::File {
                file: name.to_string(),
                reason: "no rows".into(),
            });
        };
        let first = first.map_err(|e| csv_error(name, &e))?;
        let line = line_of(&first);
        if first.iter().all(str::is_empty) {
            continue;
        }
        let cells: Vec<String> = first.iter().map(str::to_string).collect();
        let numeric = |i: usize| cells.get(i).is_some_and(|c| number(c).is_some());
        let is_time = |c: &String| timestamps(&[c.as_str()]).is_ok();
        if numeric(1) || (cells.len() >= 2 && is_missing(&cells[1]) && is_time(&cells[0])) {
            pending = Some(first);
            break Columns {
                time: 0,
                value: 1,
                label: (cells.len() > 2).then_some(2),
                width: cells.len(),
            };
        }
        quality.header = true;
        let column = |names: &[&str], what: &str| {
            find(&cells, names).ok_or_else(|| {
                row_err(
                    line,
                    format!(
                        "no {what} column in the header (columns: {}; expected one of: {})",
                        cells.join(", "),
                        names.join(", ")
                    ),
                )
            })
        };
        break Columns {
            time: column(TIME_NAMES, "timestamp")?,
            value: column(VALUE_NAMES, "value")?,
            label: find(&cells, LABEL_NAMES),
            width: cells.len(),
        };
    };

    let mut raw: Vec<(usize, String, f64, Option<bool>)> = Vec::new();
    for record in pending.into_iter().map(Ok).chain(records) {
        let record = record.map_err(|e| csv_error(name, &e))?;
        let line = line_of(&record);
        if record.iter().all(str::is_empty) {
            continue;
        }
        quality.rows += 1;
        let cell = |i: usize| record.get(i);
        let (Some(t), Some(v)) = (cell(columns.time), cell(columns.value)) else {
            return Err(row_err(
                line,
                format!(
                    "{} field(s), expected {} (timestamp in column {}, value in column {})",
                    record.len(),
                    columns.width,
                    columns.time + 1,
                    columns.value + 1
                ),
            ));
        };
        if is_missing(t) {
            return Err(row_err(line, "no timestamp".into()));
        }
        if is_missing(v) {
            quality.missing_values.push(line);
            continue;
        }
        let value =
            number(v).ok_or_else(|| row_err(line, format!("value `{v}` is not a number")))?;
        if !value.is_finite() {
            quality.non_finite_values.push(line);
            continue;
        }
        let label =
            match columns.label.and_then(cell) {
                None => None,
                Some(l) => Some(parse_label(l).ok_or_else(|| {
                    row_err(line, format!("label `{l}` is not 0/1 or true/false"))
                })?),
            };
        raw.push((line, t.to_string(), value, label));
    }
    if raw.is_empty() {
        return Err(SeriesError::File {
            file: name.to_string(),
            reason: format!(
                "no usable rows ({} read, {} missing and {} non-finite values)",
                quality.rows, quality.missing_values.count, quality.non_finite_values.count
            ),
        });
    }
    let stamps: Vec<&str> = raw.iter().map(|r| r.1.as_str()).collect();
    let times = timestamps(&stamps).map_err(|(i, reason)| row_err(raw[i].0, reason))?;
    let mut points: Vec<Point> = raw
        .into_iter()
        .zip(times)
        .map(|((line, timestamp, value, label), at)| Point {
            line,
            timestamp,
            at,
            value,
            label,
        })
        .collect();
    quality.timing(&mut points);
    Ok(Series {
        name: name.to_string(),
        labelled: columns.label.is_some(),
        points,
        quality,
    })
}

/// `,` unless the first line has none and has `;` or tabs (European and TSV exports).
fn delimiter(bytes: &[u8]) -> u8 {
    let first = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    if first.contains(&b',') {
        b','
    } else if first.contains(&b';') {
        b';'
    } else if first.contains(&b'\t') {
        b'\t'
    } else {
        b','
    }
}

fn line_of(record: &csv::StringRecord) -> usize {
    record
        .position()
        .map_or(0, |p| usize::try_from(p.line()).unwrap_or(usize::MAX))
}

fn csv_error(name: &str, e: &csv::Error) -> SeriesError {
    let line = e
        .position()
        .map_or(0, |p| usize::try_from(p.line()).unwrap_or(usize::MAX));
    let reason = match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "not UTF-8 text".to_string(),
        _ => e.to_string(),
    };
    SeriesError::Row {
        file: name.to_string(),
        line,
        reason,
    }
}

fn parse_label(cell: &str) -> Option<bool> {
    match cell.to_ascii_lowercase().as_str() {
        "" | "0" | "0.0" | "false" | "no" => Some(false),
        "1" | "1.0" | "true" | "yes" => Some(true),
        _ => None,
    }
}

/// Epoch numbers in the unit their magnitude implies (the largest of the column decides:
/// seconds below 1e11, milliseconds below 1e14, microseconds below 1e17, else nanoseconds),
/// or text: RFC 3339, `YYYY-MM-DD HH:MM:SS[.fff]` (UTC), `YYYY-MM-DD`. Errors give the index
/// of the first unreadable one.
pub(super) fn timestamps(stamps: &[&str]) -> Result<Vec<i64>, (usize, String)> {
    let numbers: Vec<Option<f64>> = stamps
        .iter()
        .map(|s| s.parse::<f64>().ok().filter(|n| n.is_finite()))
        .collect();
    let largest = numbers.iter().flatten().fold(0.0f64, |m, n| m.max(n.abs()));
    let per_unit = match largest {
        l if l < 1e11 => 1e9,
        l if l < 1e14 => 1e6,
        l if l < 1e17 => 1e3,
        _ => 1.0,
    };
    let mut out = vec![0i64; stamps.len()];
    let mut text = Vec::new();
    for (i, n) in numbers.iter().enumerate() {
        match n {
            Some(n) => {
                let ns = n * per_unit;
                if ns.abs() >= 9.2e18 {
                    return Err((i, format!("timestamp `{}` is out of range", stamps[i])));
                }
                out[i] = ns as i64;
            }
            None => text.push(i),
        }
    }
    if text.is_empty() {
        return Ok(out);
    }
    let texts: StringArray = text.iter().map(|i| Some(stamps[*i])).collect();
    let unreadable = |i: usize| {
        format!(
            "unreadable timestamp `{}` (RFC 3339, `YYYY-MM-DD HH:MM:SS` or epoch seconds/ms)",
            stamps[i]
        )
    };
    let parsed = cast(
        &(Arc::new(texts) as Arc<dyn Array>),
        &DataType::Timestamp(TimeUnit::Nanosecond, None),
    )
    .map_err(|_| (text[0], unreadable(text[0])))?;
    let parsed = parsed.as_primitive::<TimestampNanosecondType>();
    for (k, i) in text.iter().enumerate() {
        if parsed.is_null(k) {
            return Err((*i, unreadable(*i)));
        }
        out[*i] = parsed.value(k);
    }
    Ok(out)
}
