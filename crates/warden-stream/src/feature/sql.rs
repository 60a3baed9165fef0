//! `type = "sql"` features: a DataFusion SQL expression over aggregates of a window's events,
//! e.g. `count(*) filter (where status >= 500) / count(*)`.
//!
//! The expression is parsed by DataFusion against the event table's schema. Each aggregate
//! call becomes an incremental aggregate of the window (shared with the fast path) and is
//! replaced by a column `__agg_i`; what is left — arithmetic, `CASE`, `coalesce`, any scalar
//! function — is a physical expression evaluated over all keys of a round at once.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field as ArrowField, Schema};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{Expr, col};

use super::{AggValue, Compiler, Output, ScalarOp, SketchKind, WindowPlan};

/// Aggregates a SQL feature may use.
pub const SUPPORTED: &str = "count, count(distinct …), approx_distinct, sum, avg, min, max, \
                             approx_percentile_cont, approx_median";

pub(super) fn compile(plan: &mut WindowPlan, c: &Compiler, text: &str) -> Result<Output, String> {
    let parsed = c
        .ctx
        .parse_sql_expr(text, &c.schema)
        .map_err(|e| clean(&e))?;
    let mut args: Vec<usize> = Vec::new();
    let mut failure: Option<String> = None;
    let outer = parsed
        .transform_down(|e| match e {
            Expr::AggregateFunction(af) => match aggregate(plan, c, &af) {
                Ok(v) => {
                    let name = format!("__agg_{}", args.len());
                    args.push(v);
                    Ok(Transformed::new_jump(col(name)))
                }
                Err(why) => {
                    failure.get_or_insert(why);
                    Ok(Transformed::new_jump(Expr::Literal(
                        ScalarValue::Float64(None),
                        None,
                    )))
                }
            },
            Expr::WindowFunction(_) => {
                failure.get_or_insert("window functions are not supported".into());
                Ok(Transformed::new_jump(Expr::Literal(
                    ScalarValue::Float64(None),
                    None,
                )))
            }
            other => Ok(Transformed::no(other)),
        })
        .map_err(|e| clean(&e))?
        .data;
    if let Some(why) = failure {
        return Err(why);
    }
    if args.is_empty() {
        return Err(format!(
            "must aggregate the window's events (one of: {SUPPORTED})"
        ));
    }
    let mut stray = Vec::new();
    outer
        .apply(|e| {
            if let Expr::Column(c) = e
                && !c.name.starts_with("__agg_")
            {
                stray.push(c.name.clone());
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .map_err(|e| clean(&e))?;
    if !stray.is_empty() {
        return Err(format!(
            "column(s) {} must be inside an aggregate (the feature is one number per key)",
            stray.join(", ")
        ));
    }
    let schema = Arc::new(Schema::new(
        (0..args.len())
            .map(|i| ArrowField::new(format!("__agg_{i}"), DataType::Float64, true))
            .collect::<Vec<_>>(),
    ));
    let df_schema = DFSchema::try_from(schema.as_ref().clone()).map_err(|e| clean(&e))?;
    let expr = super::physical(&c.ctx, outer, &df_schema).map_err(|e| clean(&e))?;
    Ok(Output::Sql { expr, schema, args })
}

/// A replaced node whose children are not visited.
trait Jump {
    fn new_jump(e: Expr) -> Transformed<Expr>;
}

impl Jump for Transformed<Expr> {
    fn new_jump(e: Expr) -> Transformed<Expr> {
        Transformed::new(e, true, TreeNodeRecursion::Jump)
    }
}

fn clean(e: &DataFusionError) -> String {
    e.to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn literal_f64(e: &Expr) -> Option<f64> {
    match e {
        Expr::Literal(v, _) => match v {
            ScalarValue::Float64(Some(x)) => Some(*x),
            ScalarValue::Float32(Some(x)) => Some(f64::from(*x)),
            ScalarValue::Int64(Some(x)) => Some(*x as f64),
            ScalarValue::Int32(Some(x)) => Some(f64::from(*x)),
            _ => None,
        },
        Expr::Cast(c) => literal_f64(&c.expr),
        _ => None,
    }
}

fn aggregate(plan: &mut WindowPlan, c: &Compiler, af: &AggregateFunction) -> Result<usize, String> {
    let name = af.func.name().to_ascii_lowercase();
    let p = &af.params;
    let filter = p.filter.as_deref().cloned();
    let arg = |i: usize| {
        p.args
            .get(i)
            .cloned()
            .ok_or_else(|| format!("{name}: missing argument {}", i + 1))
    };
    let df = |e: DataFusionError| format!("{name}: {}", clean(&e));
    let v = match name.as_str() {
        "count" if p.distinct => {
            let s = plan
                .sketch(c, SketchKind::Distinct, arg(0)?, filter)
                .map_err(df)?;
            AggValue::Distinct(s)
        }
        "count" => {
            let input = match p.args.first() {
                None => None,
                Some(Expr::Literal(v, _)) if !v.is_null() => None,
                Some(e) => Some(e.clone()),
            };
            AggValue::Scalar(plan.scalar(c, ScalarOp::Count, input, filter).map_err(df)?)
        }
        "approx_distinct" => AggValue::Distinct(
            plan.sketch(c, SketchKind::Distinct, arg(0)?, filter)
                .map_err(df)?,
        ),
        "sum" | "avg" | "mean" => {
            let x = arg(0)?;
            let sum = plan
                .scalar(c, ScalarOp::Sum, Some(x.clone()), filter.clone())
                .map_err(df)?;
            let count = plan
                .scalar(c, ScalarOp::Count, Some(x), filter)
                .map_err(df)?;
            if name == "sum" {
                AggValue::SumOrNan { sum, count }
            } else {
                AggValue::Mean { sum, count }
            }
        }
        "min" | "max" => {
            let op = if name == "min" {
                ScalarOp::Min
            } else {
                ScalarOp::Max
            };
            AggValue::Extreme(plan.scalar(c, op, Some(arg(0)?), filter).map_err(df)?)
        }
        "approx_percentile_cont" | "approx_median" | "median" => {
            let q = if name == "approx_percentile_cont" {
                let q = literal_f64(&arg(1)?)
                    .ok_or_else(|| format!("{name}: the percentile must be a number"))?;
                if !(0.0..=1.0).contains(&q) {
                    return Err(format!("{name}: the percentile must be in [0, 1]"));
                }
                q
            } else {
                0.5
            };
            let s = plan
                .sketch(c, SketchKind::Quantiles, arg(0)?, filter)
                .map_err(df)?;
            AggValue::Quantile(s, q)
        }
        other => {
            return Err(format!(
                "aggregate `{other}` is not supported in features (supported: {SUPPORTED})"
            ));
        }
    };
    Ok(plan.value(v))
}
