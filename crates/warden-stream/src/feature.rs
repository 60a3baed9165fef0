//! Features compiled into incremental aggregates.
//!
//! Every feature of a window becomes one or more *aggregates* kept per bucket (one bucket per
//! slide and key): scalar counters (`count`, `sum`, `min`, `max`) and sketches (HyperLogLog
//! for distinct counts, DDSketch for quantiles). Events update their bucket once; a feature is
//! read by folding the buckets of the window (a handful of additions per slide — never a
//! rescan of events). Identical aggregates are shared between features.
//!
//! Aggregate inputs and filters are DataFusion physical expressions evaluated column-wise once
//! per batch, so the fast path (`count`, `rate`, `sum`, `ratio`, `distinct`, `percentile`…)
//! and SQL features (`type = "sql"`, see [`sql`]) share one machinery: a SQL feature's
//! aggregates are incremental like the others, and its outer expression is evaluated by
//! DataFusion over the aggregates of all keys of a round at once.

mod sql;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, RecordBatch};
use arrow::buffer::{BooleanBuffer, NullBuffer};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Schema};
use datafusion::common::DFSchema;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{Expr, col, in_list, lit};
use datafusion::physical_plan::PhysicalExpr;
use datafusion::prelude::SessionContext;
use warden_config::{Cyclic, FeatureConfig, Field, FilterConfig};

use crate::sketch::{Hll, Sketch};

/// Seed of the hash used for distinct counts and novelty (fixed: sketches are persisted).
pub const HASH_SEED: u64 = 0x5741_5244_454e;

pub fn hasher() -> foldhash::fast::FixedState {
    foldhash::fast::FixedState::with_seed(HASH_SEED)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarOp {
    /// Rows (or non-null input values).
    Count,
    Sum,
    Min,
    Max,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SketchKind {
    Distinct,
    Quantiles,
}

#[derive(Debug, Clone)]
pub struct ScalarAgg {
    pub op: ScalarOp,
    /// Numeric input; `None` counts rows.
    pub input: Option<usize>,
    pub filter: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct SketchAgg {
    pub kind: SketchKind,
    /// Hashed (distinct) or numeric (quantiles) input.
    pub input: usize,
    pub filter: Option<usize>,
}

/// A number read from the folded aggregates of a key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AggValue {
    Scalar(usize),
    /// SQL `sum`: NaN (NULL) when no value was summed.
    SumOrNan {
        sum: usize,
        count: usize,
    },
    Mean {
        sum: usize,
        count: usize,
    },
    /// `min`/`max`: NaN when no value.
    Extreme(usize),
    Distinct(usize),
    Quantile(usize, f64),
}

/// How a feature is computed from aggregate values.
#[derive(Debug, Clone)]
pub enum Output {
    Value(usize),
    /// Per second of window.
    Rate(usize),
    /// NaN when the denominator is 0.
    Ratio {
        num: usize,
        den: usize,
    },
    /// A component of the hour of the day of the sample's time (the window's end).
    HourOfDay(Cyclic),
    /// A DataFusion expression over columns `__agg_0..n` (the listed values).
    Sql {
        expr: Arc<dyn PhysicalExpr>,
        schema: Arc<Schema>,
        args: Vec<usize>,
    },
}

/// How an input expression is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputKind {
    /// As a number (NaN when null or not numeric).
    Number,
    /// As a 64-bit hash (distinct counts).
    Hash,
    /// As a 64-bit hash of the value and the event's `query_hash` together (distinct
    /// resources: path and query).
    HashWithQuery,
    /// Only whether it is present (1, or NaN when null): `count(x)`.
    Presence,
}

#[derive(Debug, Clone)]
pub struct Input {
    pub expr: Arc<dyn PhysicalExpr>,
    pub kind: InputKind,
}

/// The compiled features of one window.
#[derive(Debug, Clone, Default)]
pub struct WindowPlan {
    pub names: Vec<String>,
    pub outputs: Vec<Output>,
    pub inputs: Vec<Input>,
    pub filters: Vec<Arc<dyn PhysicalExpr>>,
    pub scalars: Vec<ScalarAgg>,
    pub sketches: Vec<SketchAgg>,
    pub values: Vec<AggValue>,
    /// Dedup keys.
    input_keys: HashMap<(String, InputKind), usize>,
    filter_keys: HashMap<String, usize>,
    scalar_keys: HashMap<String, usize>,
    sketch_keys: HashMap<String, usize>,
}

/// Inputs of one batch, evaluated column-wise.
pub struct BatchInputs {
    filters: Vec<BooleanBuffer>,
    numbers: Vec<Vec<f64>>,
    hashes: Vec<(Vec<u64>, Option<NullBuffer>)>,
}

/// What compiling a feature can fail on (reported at its config key).
#[derive(Debug)]
pub struct CompileError {
    pub key: &'static str,
    pub reason: String,
}

pub struct Compiler {
    ctx: SessionContext,
    schema: DFSchema,
}

impl Compiler {
    pub fn new() -> Result<Self, DataFusionError> {
        let schema = DFSchema::try_from(warden_event::request_event_schema().as_ref().clone())?;
        Ok(Self {
            ctx: SessionContext::new(),
            schema,
        })
    }

    fn physical(&self, e: Expr) -> Result<Arc<dyn PhysicalExpr>, DataFusionError> {
        physical(&self.ctx, e, &self.schema)
    }
}

/// A physical expression from a logical one: simplified (e.g. `coalesce` into `CASE`),
/// type-coerced and planned against `schema`.
pub fn physical(
    ctx: &SessionContext,
    e: Expr,
    schema: &DFSchema,
) -> Result<Arc<dyn PhysicalExpr>, DataFusionError> {
    use datafusion::logical_expr::simplify::SimplifyContext;
    use datafusion::optimizer::simplify_expressions::ExprSimplifier;
    let props = SimplifyContext::builder()
        .with_schema(Arc::new(schema.clone()))
        .build();
    let simplifier = ExprSimplifier::new(props);
    let e = simplifier.coerce(e, schema)?;
    let e = simplifier.simplify(e)?;
    ctx.create_physical_expr(e, schema)
}

fn column(f: Field) -> Expr {
    col(match f {
        Field::Outcome => "decision",
        // Hashed with `query_hash` where distinct values are counted (see `sketch`).
        Field::Resource => "path",
        other => other.as_str(),
    })
}

fn enum_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// A filter as a boolean expression over the event table.
pub fn filter_expr(f: &FilterConfig) -> Option<Expr> {
    let mut parts = Vec::new();
    if let Some(m) = f.min_status {
        parts.push(col("status").gt_eq(lit(m)));
    }
    if let Some(m) = f.max_status {
        parts.push(col("status").lt_eq(lit(m)));
    }
    let list = |c: &str, values: Vec<String>| {
        in_list(col(c), values.into_iter().map(lit).collect(), false)
    };
    if !f.outcome.is_empty() {
        parts.push(list(
            "decision",
            f.outcome.iter().map(|o| o.as_str().to_string()).collect(),
        ));
    }
    if !f.auth_result.is_empty() {
        parts.push(list(
            "auth_result",
            f.auth_result.iter().map(enum_name).collect(),
        ));
    }
    if !f.method.is_empty() {
        parts.push(list("method", f.method.clone()));
    }
    if !f.route.is_empty() {
        parts.push(list("route", f.route.clone()));
    }
    if !f.reason.is_empty() {
        parts.push(list(
            "reason",
            f.reason.iter().map(|r| r.as_str().to_string()).collect(),
        ));
    }
    if f.excludes_enforced() {
        parts.push(not_enforced());
    }
    parts.into_iter().reduce(Expr::and)
}

/// Events not refused by Warden's own enforcement (quarantine, throttle, rate limit, load
/// shedding).
pub fn not_enforced() -> Expr {
    in_list(
        col("reason"),
        warden_event::Reason::ALL
            .into_iter()
            .filter(|r| r.is_enforcement())
            .map(|r| lit(r.as_str()))
            .collect(),
        true,
    )
}

impl WindowPlan {
    fn input(&mut self, c: &Compiler, e: Expr, kind: InputKind) -> Result<usize, DataFusionError> {
        let key = (e.to_string(), kind);
        if let Some(i) = self.input_keys.get(&key) {
            return Ok(*i);
        }
        let expr = c.physical(e)?;
        self.inputs.push(Input { expr, kind });
        self.input_keys.insert(key, self.inputs.len() - 1);
        Ok(self.inputs.len() - 1)
    }

    fn filter(&mut self, c: &Compiler, e: Option<Expr>) -> Result<Option<usize>, DataFusionError> {
        let Some(e) = e else { return Ok(None) };
        let key = e.to_string();
        if let Some(i) = self.filter_keys.get(&key) {
            return Ok(Some(*i));
        }
        self.filters.push(c.physical(e)?);
        self.filter_keys.insert(key, self.filters.len() - 1);
        Ok(Some(self.filters.len() - 1))
    }

    fn value(&mut self, v: AggValue) -> usize {
        match self.values.iter().position(|x| *x == v) {
            Some(i) => i,
            None => {
                self.values.push(v);
                self.values.len() - 1
            }
        }
    }

    /// A scalar aggregate of `input` (None: rows) under `filter`.
    fn scalar(
        &mut self,
        c: &Compiler,
        op: ScalarOp,
        input: Option<Expr>,
        filter: Option<Expr>,
    ) -> Result<usize, DataFusionError> {
        let key = format!(
            "{op:?}({})|{}",
            input.as_ref().map(Expr::to_string).unwrap_or_default(),
            filter.as_ref().map(Expr::to_string).unwrap_or_default()
        );
        if let Some(i) = self.scalar_keys.get(&key) {
            return Ok(*i);
        }
        let kind = if op == ScalarOp::Count {
            InputKind::Presence
        } else {
            InputKind::Number
        };
        let input = input.map(|e| self.input(c, e, kind)).transpose()?;
        let filter = self.filter(c, filter)?;
        self.scalars.push(ScalarAgg { op, input, filter });
        self.scalar_keys.insert(key, self.scalars.len() - 1);
        Ok(self.scalars.len() - 1)
    }

    /// A sketch of an event field (`resource`: path and query hash together).
    fn sketch_field(
        &mut self,
        c: &Compiler,
        kind: SketchKind,
        field: Field,
        filter: Option<Expr>,
    ) -> Result<usize, DataFusionError> {
        let input_kind = match kind {
            SketchKind::Distinct if field == Field::Resource => InputKind::HashWithQuery,
            SketchKind::Distinct => InputKind::Hash,
            SketchKind::Quantiles => InputKind::Number,
        };
        self.sketch_of(c, kind, column(field), input_kind, filter)
    }

    fn sketch(
        &mut self,
        c: &Compiler,
        kind: SketchKind,
        input: Expr,
        filter: Option<Expr>,
    ) -> Result<usize, DataFusionError> {
        let input_kind = match kind {
            SketchKind::Distinct => InputKind::Hash,
            SketchKind::Quantiles => InputKind::Number,
        };
        self.sketch_of(c, kind, input, input_kind, filter)
    }

    fn sketch_of(
        &mut self,
        c: &Compiler,
        kind: SketchKind,
        input: Expr,
        input_kind: InputKind,
        filter: Option<Expr>,
    ) -> Result<usize, DataFusionError> {
        let key = format!(
            "{kind:?}({input}, {input_kind:?})|{}",
            filter.as_ref().map(Expr::to_string).unwrap_or_default()
        );
        if let Some(i) = self.sketch_keys.get(&key) {
            return Ok(*i);
        }
        let input = self.input(c, input, input_kind)?;
        let filter = self.filter(c, filter)?;
        self.sketches.push(SketchAgg {
            kind,
            input,
            filter,
        });
        self.sketch_keys.insert(key, self.sketches.len() - 1);
        Ok(self.sketches.len() - 1)
    }

    fn count(&mut self, c: &Compiler, filter: Option<Expr>) -> Result<usize, DataFusionError> {
        let s = self.scalar(c, ScalarOp::Count, None, filter)?;
        Ok(self.value(AggValue::Scalar(s)))
    }

    /// Add a feature.
    pub fn add(&mut self, c: &Compiler, f: &FeatureConfig) -> Result<(), CompileError> {
        let df = |key: &'static str| {
            move |e: DataFusionError| CompileError {
                key,
                reason: e.to_string(),
            }
        };
        let filter_of = |f: &Option<FilterConfig>| f.as_ref().and_then(filter_expr);
        let output = match f {
            FeatureConfig::Count(x) => {
                Output::Value(self.count(c, filter_of(&x.filter)).map_err(df("filter"))?)
            }
            FeatureConfig::Rate(x) => {
                Output::Rate(self.count(c, filter_of(&x.filter)).map_err(df("filter"))?)
            }
            FeatureConfig::Sum(x) => {
                let s = self
                    .scalar(
                        c,
                        ScalarOp::Sum,
                        Some(column(x.field)),
                        filter_of(&x.filter),
                    )
                    .map_err(df("field"))?;
                Output::Value(self.value(AggValue::Scalar(s)))
            }
            FeatureConfig::Mean(x) => {
                let filter = filter_of(&x.filter);
                let sum = self
                    .scalar(c, ScalarOp::Sum, Some(column(x.field)), filter.clone())
                    .map_err(df("field"))?;
                let count = self
                    .scalar(c, ScalarOp::Count, Some(column(x.field)), filter)
                    .map_err(df("field"))?;
                Output::Value(self.value(AggValue::Mean { sum, count }))
            }
            FeatureConfig::Ratio(x) => {
                let num = self
                    .count(c, filter_expr(&x.filter))
                    .map_err(df("filter"))?;
                let den = self.count(c, None).map_err(df("filter"))?;
                Output::Ratio { num, den }
            }
            FeatureConfig::ErrorRatio(x) => {
                let e = col("status")
                    .gt_eq(lit(x.error_status()))
                    .and(not_enforced());
                let num = self.count(c, Some(e)).map_err(df("min_status"))?;
                let den = self.count(c, None).map_err(df("min_status"))?;
                Output::Ratio { num, den }
            }
            FeatureConfig::DeniedRatio(_) => {
                let denied = in_list(
                    col("decision"),
                    vec![lit("allowed"), lit("upstream_error")],
                    true,
                );
                let num = self.count(c, Some(denied)).map_err(df("type"))?;
                let den = self.count(c, None).map_err(df("type"))?;
                Output::Ratio { num, den }
            }
            FeatureConfig::Distinct(x) => {
                let s = self
                    .sketch_field(c, SketchKind::Distinct, x.field, filter_of(&x.filter))
                    .map_err(df("field"))?;
                Output::Value(self.value(AggValue::Distinct(s)))
            }
            FeatureConfig::Percentile(x) => {
                let s = self
                    .sketch_field(c, SketchKind::Quantiles, x.field, filter_of(&x.filter))
                    .map_err(df("field"))?;
                Output::Value(self.value(AggValue::Quantile(s, x.quantile)))
            }
            FeatureConfig::HourOfDay(x) => Output::HourOfDay(x.component),
            FeatureConfig::Sql(x) => {
                sql::compile(self, c, &x.expr).map_err(|reason| CompileError {
                    key: "expr",
                    reason,
                })?
            }
        };
        self.names.push(f.name().to_string());
        self.outputs.push(output);
        Ok(())
    }

    /// Whether folding buckets in any order gives the same aggregates: counts, min, max and
    /// sketches always; sums only of integer inputs (exact in `f64` while below 2^53), since a
    /// sum of fractional values can differ in its last bits with the order of additions.
    pub fn order_free(&self) -> bool {
        let schema = warden_event::request_event_schema();
        self.scalars.iter().all(|a| match (a.op, a.input) {
            (ScalarOp::Sum, Some(i)) => self
                .inputs
                .get(i)
                .and_then(|inp| inp.expr.data_type(&schema).ok())
                .is_some_and(|t| t.is_integer()),
            _ => true,
        })
    }

    /// Whether a window's fold can be kept as a running total, adding the buckets that enter
    /// and taking out those that leave: counts, integer sums and distinct counts only
    /// (see `window/running.rs`).
    pub fn invertible(&self) -> bool {
        self.sketches.iter().all(|s| s.kind == SketchKind::Distinct)
            && self.order_free()
            && self
                .scalars
                .iter()
                .all(|a| matches!(a.op, ScalarOp::Count | ScalarOp::Sum))
    }

    /// Take `bucket` back out of `acc` (an [`WindowPlan::invertible`] plan's fold).
    pub fn unfold_scalars(&self, acc: &mut [f64], bucket: &[f64]) {
        for (a, b) in acc.iter_mut().zip(bucket) {
            *a -= b;
        }
    }

    /// Fresh scalar slots of a new bucket.
    pub fn new_scalars(&self, out: &mut Vec<f64>) {
        out.extend(self.scalars.iter().map(|s| match s.op {
            ScalarOp::Count | ScalarOp::Sum => 0.0,
            ScalarOp::Min => f64::INFINITY,
            ScalarOp::Max => f64::NEG_INFINITY,
        }));
    }

    pub fn new_sketches(&self, out: &mut Vec<Sketch>) {
        out.extend(self.sketches.iter().map(|s| match s.kind {
            SketchKind::Distinct => Sketch::Distinct(Hll::default()),
            SketchKind::Quantiles => Sketch::Quantiles(Box::default()),
        }));
    }

    /// Evaluate inputs and filters over a batch.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<BatchInputs, DataFusionError> {
        let n = batch.num_rows();
        let mut filters = Vec::with_capacity(self.filters.len());
        for f in &self.filters {
            let a = f.evaluate(batch)?.into_array(n)?;
            let b = a.as_boolean_opt().ok_or_else(|| {
                DataFusionError::Plan(format!("filter is {}, not boolean", a.data_type()))
            })?;
            // Null (unknown) does not match.
            filters.push(match b.nulls() {
                Some(n) => b.values() & n.inner(),
                None => b.values().clone(),
            });
        }
        let mut numbers = Vec::new();
        let mut hashes = Vec::new();
        for i in &self.inputs {
            let a = i.expr.evaluate(batch)?.into_array(n)?;
            match i.kind {
                InputKind::Hash => {
                    let mut h = vec![0u64; n];
                    datafusion::common::hash_utils::create_hashes_with_hasher(
                        [&a],
                        &hasher(),
                        &mut h,
                    )?;
                    hashes.push((h, a.logical_nulls()));
                    numbers.push(Vec::new());
                }
                InputKind::HashWithQuery => {
                    let mut h = vec![0u64; n];
                    let query = batch.column_by_name("query_hash").ok_or_else(|| {
                        DataFusionError::Plan("the batch has no query_hash column".into())
                    })?;
                    datafusion::common::hash_utils::create_hashes_with_hasher(
                        [&a, query],
                        &hasher(),
                        &mut h,
                    )?;
                    hashes.push((h, a.logical_nulls()));
                    numbers.push(Vec::new());
                }
                InputKind::Number => {
                    numbers.push(as_f64(&a)?);
                    hashes.push((Vec::new(), None));
                }
                InputKind::Presence => {
                    let nulls = a.logical_nulls();
                    numbers.push(
                        (0..n)
                            .map(|r| {
                                if nulls.as_ref().is_none_or(|x| x.is_valid(r)) {
                                    1.0
                                } else {
                                    f64::NAN
                                }
                            })
                            .collect(),
                    );
                    hashes.push((Vec::new(), None));
                }
            }
        }
        Ok(BatchInputs {
            filters,
            numbers,
            hashes,
        })
    }

    /// Add row `row` of a batch to a bucket.
    pub fn update(
        &self,
        scalars: &mut [f64],
        sketches: &mut [Sketch],
        inp: &BatchInputs,
        row: usize,
    ) {
        let pass = |f: Option<usize>| f.is_none_or(|f| inp.filters[f].value(row));
        for (slot, agg) in scalars.iter_mut().zip(&self.scalars) {
            if !pass(agg.filter) {
                continue;
            }
            let v = match agg.input {
                None => 1.0,
                Some(i) => inp.numbers[i][row],
            };
            if v.is_nan() {
                continue;
            }
            match agg.op {
                ScalarOp::Count => *slot += 1.0,
                ScalarOp::Sum => *slot += v,
                ScalarOp::Min => *slot = slot.min(v),
                ScalarOp::Max => *slot = slot.max(v),
            }
        }
        for (slot, agg) in sketches.iter_mut().zip(&self.sketches) {
            if !pass(agg.filter) {
                continue;
            }
            match slot {
                Sketch::Distinct(h) => {
                    let (hashes, nulls) = &inp.hashes[agg.input];
                    if nulls.as_ref().is_none_or(|n| n.is_valid(row)) {
                        h.insert(hashes[row]);
                    }
                }
                Sketch::Quantiles(d) => d.insert(inp.numbers[agg.input][row]),
            }
        }
    }

    /// Fold scalar slots of another bucket into `acc`.
    pub fn fold_scalars(&self, acc: &mut [f64], bucket: &[f64]) {
        for ((a, b), agg) in acc.iter_mut().zip(bucket).zip(&self.scalars) {
            match agg.op {
                ScalarOp::Count | ScalarOp::Sum => *a += b,
                ScalarOp::Min => *a = a.min(*b),
                ScalarOp::Max => *a = a.max(*b),
            }
        }
    }

    /// Aggregate values from folded scalars and merged sketches.
    pub fn read_values(&self, scalars: &[f64], sketches: &[Sketch], out: &mut [f64]) {
        for (o, v) in out.iter_mut().zip(&self.values) {
            *o = match *v {
                AggValue::Scalar(i) => scalars[i],
                AggValue::SumOrNan { sum, count } => {
                    if scalars[count] == 0.0 {
                        f64::NAN
                    } else {
                        scalars[sum]
                    }
                }
                AggValue::Mean { sum, count } => {
                    if scalars[count] == 0.0 {
                        f64::NAN
                    } else {
                        scalars[sum] / scalars[count]
                    }
                }
                AggValue::Extreme(i) => {
                    if scalars[i].is_finite() {
                        scalars[i]
                    } else {
                        f64::NAN
                    }
                }
                AggValue::Distinct(i) => match &sketches[i] {
                    Sketch::Distinct(h) => h.estimate(),
                    Sketch::Quantiles(_) => f64::NAN,
                },
                AggValue::Quantile(i, q) => match &sketches[i] {
                    Sketch::Quantiles(d) => d.quantile(q),
                    Sketch::Distinct(_) => f64::NAN,
                },
            };
        }
    }

    /// Features of `rows` keys from their aggregate values (`values`: rows × values.len())
    /// over the window ending at `at_ns` (event time); writes rows × outputs.len() into `out`.
    pub fn features(
        &self,
        values: &[f64],
        rows: usize,
        size_secs: f64,
        at_ns: i64,
        out: &mut Vec<f64>,
    ) -> Result<(), DataFusionError> {
        let nv = self.values.len().max(1);
        let nf = self.outputs.len();
        out.clear();
        out.resize(rows * nf, f64::NAN);
        for (fi, o) in self.outputs.iter().enumerate() {
            match o {
                Output::Value(v) => {
                    for r in 0..rows {
                        out[r * nf + fi] = values[r * nv + v];
                    }
                }
                Output::Rate(v) => {
                    for r in 0..rows {
                        out[r * nf + fi] = values[r * nv + v] / size_secs;
                    }
                }
                Output::Ratio { num, den } => {
                    for r in 0..rows {
                        let d = values[r * nv + den];
                        out[r * nf + fi] = if d == 0.0 {
                            f64::NAN
                        } else {
                            values[r * nv + num] / d
                        };
                    }
                }
                Output::HourOfDay(c) => {
                    let v = c.of_hour(at_ns);
                    for r in 0..rows {
                        out[r * nf + fi] = v;
                    }
                }
                Output::Sql { expr, schema, args } => {
                    if rows == 0 {
                        continue;
                    }
                    let columns: Vec<ArrayRef> = args
                        .iter()
                        .map(|a| {
                            let col: Float64Array = (0..rows)
                                .map(|r| Some(values[r * nv + a]).filter(|v| !v.is_nan()))
                                .collect();
                            Arc::new(col) as ArrayRef
                        })
                        .collect();
                    let batch = if columns.is_empty() {
                        RecordBatch::try_new_with_options(
                            schema.clone(),
                            columns,
                            &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
                        )?
                    } else {
                        RecordBatch::try_new(schema.clone(), columns)?
                    };
                    let result = as_f64(&expr.evaluate(&batch)?.into_array(rows)?)?;
                    for (r, v) in result.into_iter().enumerate() {
                        out[r * nf + fi] = if v.is_finite() { v } else { f64::NAN };
                    }
                }
            }
        }
        Ok(())
    }
}

/// An array as f64 values, NaN for nulls.
fn as_f64(a: &ArrayRef) -> Result<Vec<f64>, DataFusionError> {
    let f = cast(a, &DataType::Float64)?;
    let f = f.as_primitive::<Float64Type>();
    Ok((0..f.len())
        .map(|i| if f.is_null(i) { f64::NAN } else { f.value(i) })
        .collect())
}

#[cfg(test)]
mod tests;
