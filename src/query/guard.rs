//! Bounds on what a single SQL expression may allocate.
//!
//! DataFusion's memory pool accounts for operators that buffer (sorts, joins, aggregates), not for the values an
//! expression produces: `repeat('x', 2000000000)` or a chain of `s || s` would allocate gigabytes inside one
//! batch and take the whole appliance down with it. This module wraps the functions that can make a value much
//! larger than their inputs — and the `||` operator — so that a call whose output for one batch would exceed
//! [`MAX_GENERATED_BYTES`] fails with a clear "resources exhausted" error *before* allocating (estimated from
//! the arguments), and every wrapped result is checked again after it is computed.
//!
//! The wrappers keep the wrapped function's name, signature, return type and results, so queries that stay within
//! the bound behave exactly as before.

use datafusion::arrow::array::{Array, ArrayRef, Int64Array};
use datafusion::arrow::compute::{cast, kernels::length::length};
use datafusion::arrow::datatypes::{DataType, FieldRef, IntervalUnit, TimeUnit};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, ExprSchema};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::interval_arithmetic::Interval;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::preimage::PreimageResult;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Documentation, Expr, ExprSchemable, ExpressionPlacement, LogicalPlan, Operator,
    ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, StructFieldMapping, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use std::sync::Arc;

/// Largest output, in bytes, one call of a value-generating function may produce for one batch of rows.
pub const MAX_GENERATED_BYTES: u64 = 16 * 1024 * 1024;

/// How a wrapped function's output size is estimated from its arguments before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Estimate {
    /// `repeat(s, n)`: len(s) × n.
    Repeat,
    /// `lpad/rpad(s, n [, fill])`: up to 4 bytes per character of n.
    Pad,
    /// `array_repeat(v, n)`: n copies of v (v's own size counts: v may be a large list).
    ArrayRepeat,
    /// `array_resize(list, n [, fill])`: n elements of the list's element size.
    ArrayResize,
    /// `encode(s, 'hex' | 'base64')`: at most twice the input.
    Encode,
    /// `range/generate_series(start, stop [, step])`: (stop − start) / step elements.
    Series,
    /// `replace(s, from, to)`: every `from` of s becomes `to`.
    Replace,
    /// `regexp_replace(s, pattern, replacement [, flags])`: a replacement at every position.
    RegexpReplace,
    /// `concat(...)`, `concat_ws(sep, ...)`: the sum of the arguments (the separator once per argument).
    Sum,
}

/// The functions wrapped, and how their output is estimated.
const WRAPPED: &[(&str, Estimate)] = &[
    ("repeat", Estimate::Repeat),
    ("lpad", Estimate::Pad),
    ("rpad", Estimate::Pad),
    ("array_repeat", Estimate::ArrayRepeat),
    ("array_resize", Estimate::ArrayResize),
    ("list_resize", Estimate::ArrayResize),
    ("encode", Estimate::Encode),
    ("range", Estimate::Series),
    ("generate_series", Estimate::Series),
    ("replace", Estimate::Replace),
    ("regexp_replace", Estimate::RegexpReplace),
    ("concat", Estimate::Sum),
    ("concat_ws", Estimate::Sum),
    ("make_array", Estimate::Sum),
    ("array_concat", Estimate::Sum),
];

/// Name of the function that checks the size of a `||` result.
const CONCAT_CHECK: &str = "ccmart_bounded";

/// Largest output, in bytes, one call of any other scalar function may produce for one batch of rows (checked
/// after the call). Higher than [`MAX_GENERATED_BYTES`]: these functions do not multiply their input, so a result
/// this large means a chain of them has grown a value step by step, and the check stops the chain at the step
/// that passes it.
pub const MAX_FUNCTION_OUTPUT_BYTES: u64 = 64 * 1024 * 1024;

/// Functions left unwrapped: DataFusion recognises them by type (struct field access and its pushdown into the
/// Parquet reader, functions the reader answers itself, `log`/`power` simplification), and none can make a value
/// larger than its inputs.
const RECOGNISED_BY_TYPE: &[&str] =
    &["get_field", "named_struct", "struct", "input_file_name", "file_row_index", "log", "power", "pow"];

/// Installs the wrappers and the `||` planner into `ctx`: the value-generating functions ([`WRAPPED`]) get an
/// estimate before they run and a check after, every other scalar function of the context (DataFusion's,
/// the PostgreSQL catalog's, ccmart's) a check after it ran, so a function added by a later DataFusion release is
/// bounded too. Functions the context does not have are skipped.
pub fn install(ctx: &SessionContext) -> Result<()> {
    let state = ctx.state();
    for (name, udf) in state.scalar_functions() {
        let skip = RECOGNISED_BY_TYPE.contains(&name.as_str())
            || udf.as_async().is_some()
            || udf.inner().is::<BoundedFunction>();
        if name != udf.name() || skip {
            continue;
        }
        let estimate = WRAPPED.iter().find(|(n, _)| n == name).map(|(_, e)| *e);
        ctx.register_udf(ScalarUDF::new_from_impl(BoundedFunction { inner: udf.clone(), estimate }));
    }
    ctx.register_udf(ScalarUDF::new_from_impl(SizeCheck::new()));
    ctx.state_ref().write().register_expr_planner(Arc::new(BoundedConcatPlanner))?;
    Ok(())
}

fn exhausted(what: &str, bytes: u128) -> DataFusionError {
    DataFusionError::ResourcesExhausted(format!(
        "{what} would produce about {} MiB for one batch of rows, more than the {} MiB a single expression may \
         generate",
        bytes / (1024 * 1024),
        MAX_GENERATED_BYTES / (1024 * 1024)
    ))
}

/// Per-row byte lengths of a string argument (0 for NULL).
fn lengths(arg: &ColumnarValue, rows: usize) -> Result<Vec<u128>> {
    per_row(arg, rows, |a| {
        if !matches!(a.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Binary) {
            return Ok(vec![0; a.len()]);
        }
        let l = cast(&length(a)?, &DataType::Int64)?;
        let l = l.as_any().downcast_ref::<Int64Array>().map(|l| l.iter().map(|v| v.unwrap_or(0).max(0) as u128));
        Ok(l.map(Iterator::collect).unwrap_or_default())
    })
}

/// Applies `f` to an argument's values, one per row. A scalar is evaluated once and repeated: materialising it
/// for every row is exactly the allocation this module prevents.
fn per_row<T: Clone>(arg: &ColumnarValue, rows: usize, f: impl Fn(&ArrayRef) -> Result<Vec<T>>) -> Result<Vec<T>> {
    match arg {
        ColumnarValue::Array(a) => f(a),
        ColumnarValue::Scalar(s) => {
            let one = f(&s.to_array_of_size(1)?)?;
            Ok(one.into_iter().next().map(|v| vec![v; rows]).unwrap_or_default())
        }
    }
}

/// Per-row values of an integer argument (0 for NULL or a non-integer).
fn ints(arg: &ColumnarValue, rows: usize) -> Result<Vec<i128>> {
    per_row(arg, rows, |a| {
        let Ok(c) = cast(a, &DataType::Int64) else { return Ok(vec![0; a.len()]) };
        let v = c.as_any().downcast_ref::<Int64Array>().map(|c| c.iter().map(|v| i128::from(v.unwrap_or(0))));
        Ok(v.map(Iterator::collect).unwrap_or_default())
    })
}

/// Per-row nanoseconds of a date, timestamp or interval argument, or `None` when it is neither.
fn nanos(arg: &ColumnarValue, rows: usize) -> Result<Option<Vec<i128>>> {
    let dt = arg.data_type();
    if !matches!(dt, DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) | DataType::Interval(_)) {
        return Ok(None);
    }
    per_row(arg, rows, |a| match a.data_type() {
        DataType::Interval(_) => {
            let i = cast(a, &DataType::Interval(IntervalUnit::MonthDayNano))?;
            let i = i.as_any().downcast_ref::<datafusion::arrow::array::IntervalMonthDayNanoArray>();
            Ok(i.map(|i| {
                i.iter()
                    .map(|v| {
                        v.map_or(0, |v| {
                            i128::from(v.months) * 28 * 86_400_000_000_000
                                + i128::from(v.days) * 86_400_000_000_000
                                + i128::from(v.nanoseconds)
                        })
                    })
                    .collect()
            })
            .unwrap_or_default())
        }
        _ => {
            let ts = cast(a, &DataType::Timestamp(TimeUnit::Nanosecond, None))?;
            let n = cast(&ts, &DataType::Int64)?;
            Ok(n.as_any()
                .downcast_ref::<Int64Array>()
                .map(|n| n.iter().map(|v| i128::from(v.unwrap_or(0))).collect())
                .unwrap_or_default())
        }
    })
    .map(Some)
}

/// Estimated output bytes of one call over `rows` rows.
fn estimate(kind: Estimate, args: &[ColumnarValue], rows: usize) -> Result<u128> {
    let rows = rows.max(1);
    let arg = |i: usize| args.get(i);
    let total = match kind {
        Estimate::Repeat => match (arg(0), arg(1)) {
            (Some(s), Some(n)) => lengths(s, rows)?.iter().zip(ints(n, rows)?).map(|(l, n)| l * n.max(0) as u128).sum(),
            _ => 0,
        },
        Estimate::Pad => arg(1)
            .map(|n| ints(n, rows))
            .transpose()?
            .unwrap_or_default()
            .iter()
            .map(|n| 4 * n.max(&0).unsigned_abs())
            .sum(),
        Estimate::ArrayRepeat => match (arg(0), arg(1)) {
            (Some(v), Some(n)) => {
                let each = value_bytes(v, rows);
                ints(n, rows)?.iter().map(|n| each * n.max(&0).unsigned_abs()).sum()
            }
            _ => 0,
        },
        Estimate::ArrayResize => match (arg(0), arg(1)) {
            (Some(list), Some(n)) => {
                // Elements are at least 16 bytes (a value and its offset/validity share), more for wide ones.
                let each = element_bytes(list).max(16);
                ints(n, rows)?.iter().map(|n| each * n.max(&0).unsigned_abs()).sum()
            }
            _ => 0,
        },
        Estimate::Encode => {
            arg(0).map(|s| lengths(s, rows)).transpose()?.unwrap_or_default().iter().map(|l| 2 * l).sum()
        }
        Estimate::Series => {
            let (start, stop, step) = match args.len() {
                1 => (None, &args[0], None),
                2 => (Some(&args[0]), &args[1], None),
                _ => (Some(&args[0]), &args[1], Some(&args[2])),
            };
            let as_nanos = nanos(stop, rows)?;
            let (starts, stops, steps): (Vec<i128>, Vec<i128>, Vec<i128>) = match as_nanos {
                Some(stops) => {
                    let starts = match start {
                        Some(s) => nanos(s, rows)?.unwrap_or_else(|| vec![0; stops.len()]),
                        None => vec![0; stops.len()],
                    };
                    // A date series without a step advances by one day.
                    let steps = match step {
                        Some(s) => nanos(s, rows)?.unwrap_or_else(|| vec![86_400_000_000_000; stops.len()]),
                        None => vec![86_400_000_000_000; stops.len()],
                    };
                    (starts, stops, steps)
                }
                None => {
                    let stops = ints(stop, rows)?;
                    let starts = match start {
                        Some(s) => ints(s, rows)?,
                        None => vec![0; stops.len()],
                    };
                    let steps = match step {
                        Some(s) => ints(s, rows)?,
                        None => vec![1; stops.len()],
                    };
                    (starts, stops, steps)
                }
            };
            starts
                .iter()
                .zip(&stops)
                .zip(&steps)
                .map(|((a, b), s)| 16 * ((b - a).unsigned_abs() / s.unsigned_abs().max(1) + 1))
                .sum()
        }
        Estimate::Replace => match (arg(0), arg(1), arg(2)) {
            (Some(s), Some(from), Some(to)) => {
                let (s, from, to) = (lengths(s, rows)?, lengths(from, rows)?, lengths(to, rows)?);
                s.iter().zip(from).zip(to).map(|((s, f), t)| s + s / f.max(1) * t).sum()
            }
            _ => 0,
        },
        Estimate::RegexpReplace => match (arg(0), arg(2)) {
            (Some(s), Some(rep)) => {
                lengths(s, rows)?.iter().zip(lengths(rep, rows)?).map(|(s, r)| (s + 1) * (r + 1)).sum()
            }
            _ => 0,
        },
        Estimate::Sum => {
            let mut sum = 0u128;
            for a in args {
                sum += lengths(a, rows)?.iter().sum::<u128>();
            }
            // concat_ws repeats its separator between arguments.
            sum + args.first().map(|a| lengths(a, rows)).transpose()?.unwrap_or_default().iter().sum::<u128>()
                * args.len() as u128
        }
    };
    Ok(total)
}

/// Bytes one row of an argument holds (at least 16; a scalar counts once).
fn value_bytes(arg: &ColumnarValue, rows: usize) -> u128 {
    let bytes = match arg {
        ColumnarValue::Array(a) => a.get_array_memory_size() as u128 / rows.max(1) as u128,
        ColumnarValue::Scalar(s) => s.size() as u128,
    };
    bytes.max(16)
}

/// Bytes of one element of a list argument (the list's values divided by their number).
fn element_bytes(arg: &ColumnarValue) -> u128 {
    use datafusion::arrow::array::AsArray;
    let values = match arg {
        ColumnarValue::Array(a) => a.as_list_opt::<i32>().map(|l| l.values().clone()),
        ColumnarValue::Scalar(datafusion::scalar::ScalarValue::List(l)) => Some(l.values().clone()),
        _ => None,
    };
    values.map_or(16, |v| v.get_array_memory_size() as u128 / v.len().max(1) as u128)
}

/// Bytes of a result once it is a column of `rows` values (a scalar is repeated on every row).
fn output_bytes(v: &ColumnarValue, rows: usize) -> u128 {
    match v {
        ColumnarValue::Array(a) => a.get_array_memory_size() as u128,
        ColumnarValue::Scalar(s) => s.size() as u128 * rows.max(1) as u128,
    }
}

/// Largest constant a query may hold, in bytes. A constant is repeated on every row of a batch (8192 rows), so
/// this bounds what one constant costs per batch (here 128 MiB). It applies after constant folding, so
/// `repeat('x', 1000000)` counts as the 1 MB constant it becomes.
pub const MAX_LITERAL_BYTES: usize = 16 * 1024;

/// Refuses a plan (optimised, so constants are folded) holding a constant larger than [`MAX_LITERAL_BYTES`].
pub fn check_constants(plan: &LogicalPlan) -> Result<()> {
    plan.apply_with_subqueries(|p| {
        p.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::Literal(v, _) = e {
                    if v.size() > MAX_LITERAL_BYTES {
                        return Err(DataFusionError::ResourcesExhausted(format!(
                            "the query holds a constant of {} bytes; a constant may have at most {MAX_LITERAL_BYTES} \
                             bytes because it is repeated on every row",
                            v.size()
                        )));
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })
    .map(|_| ())
}

/// A scalar function with a size bound (see the module docs): it behaves as the function it wraps in every
/// respect the planner and optimiser ask about (every trait method is delegated), and fails with "resources
/// exhausted" instead of producing a result over the bound.
#[derive(Debug, PartialEq, Eq, Hash)]
struct BoundedFunction {
    inner: Arc<ScalarUDF>,
    /// How the output is estimated before the call (value-generating functions only).
    estimate: Option<Estimate>,
}

impl BoundedFunction {
    fn bound(&self) -> u64 {
        if self.estimate.is_some() {
            MAX_GENERATED_BYTES
        } else {
            MAX_FUNCTION_OUTPUT_BYTES
        }
    }

    fn exhausted(&self, bytes: u128) -> DataFusionError {
        DataFusionError::ResourcesExhausted(format!(
            "{} would produce about {} MiB for one batch of rows, more than the {} MiB a single expression may \
             generate",
            self.inner.name(),
            bytes / (1024 * 1024),
            self.bound() / (1024 * 1024)
        ))
    }
}

#[warn(clippy::missing_trait_methods)]
impl ScalarUDFImpl for BoundedFunction {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn display_name(&self, args: &[Expr]) -> Result<String> {
        #[allow(deprecated)]
        self.inner.inner().display_name(args)
    }
    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.inner().schema_name(args)
    }
    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }
    fn is_nullable(&self, args: &[Expr], schema: &dyn ExprSchema) -> bool {
        #[allow(deprecated)]
        self.inner.is_nullable(args, schema)
    }
    fn is_strict(&self) -> bool {
        self.inner.inner().is_strict()
    }
    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        let updated = self.inner.inner().with_updated_config(config)?;
        Some(ScalarUDF::new_from_impl(BoundedFunction { inner: Arc::new(updated), estimate: self.estimate }))
    }
    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        self.inner.inner().simplify(args, info)
    }
    fn preimage(&self, args: &[Expr], lit_expr: &Expr, info: &SimplifyContext) -> Result<PreimageResult> {
        self.inner.inner().preimage(args, lit_expr, info)
    }
    fn conditional_arguments<'a>(&self, args: &'a [Expr]) -> Option<(Vec<&'a Expr>, Vec<&'a Expr>)> {
        self.inner.inner().conditional_arguments(args)
    }
    fn short_circuits(&self) -> bool {
        self.inner.inner().short_circuits()
    }
    fn evaluate_bounds(&self, input: &[&Interval]) -> Result<Interval> {
        self.inner.inner().evaluate_bounds(input)
    }
    fn propagate_constraints(&self, interval: &Interval, inputs: &[&Interval]) -> Result<Option<Vec<Interval>>> {
        self.inner.inner().propagate_constraints(interval, inputs)
    }
    fn struct_field_mapping(&self, literal_args: &[Option<ScalarValue>]) -> Option<StructFieldMapping> {
        self.inner.inner().struct_field_mapping(literal_args)
    }
    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.inner().output_ordering(inputs)
    }
    fn preserves_lex_ordering(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.inner().preserves_lex_ordering(inputs)
    }
    fn strictly_order_preserving(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.inner().strictly_order_preserving(inputs)
    }
    fn placement(&self, args: &[ExpressionPlacement]) -> ExpressionPlacement {
        self.inner.inner().placement(args)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        if let Some(kind) = self.estimate {
            let expected = estimate(kind, &args.args, rows)?;
            if expected > u128::from(MAX_GENERATED_BYTES) {
                return Err(self.exhausted(expected));
            }
        }
        let out = self.inner.invoke_with_args(args)?;
        let got = output_bytes(&out, rows);
        if got > u128::from(self.bound()) {
            return Err(self.exhausted(got));
        }
        Ok(out)
    }
}

/// `ccmart_bounded(v)`: returns `v` unchanged, or fails when it is larger than the bound.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SizeCheck {
    signature: Signature,
}

impl SizeCheck {
    fn new() -> Self {
        SizeCheck { signature: Signature::any(1, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for SizeCheck {
    fn name(&self) -> &str {
        CONCAT_CHECK
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Null))
    }
    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let v = args.args.pop().ok_or_else(|| DataFusionError::Internal("ccmart_bounded needs one argument".into()))?;
        let got = output_bytes(&v, args.number_rows);
        if got > u128::from(MAX_GENERATED_BYTES) {
            return Err(exhausted("||", got));
        }
        Ok(v)
    }
}

/// Plans `a || b` on strings as `ccmart_bounded(a || b)`; array concatenation is left to DataFusion's planner.
#[derive(Debug)]
struct BoundedConcatPlanner;

impl ExprPlanner for BoundedConcatPlanner {
    fn plan_binary_op(&self, expr: RawBinaryExpr, schema: &DFSchema) -> Result<PlannerResult<RawBinaryExpr>> {
        if expr.op != datafusion::sql::sqlparser::ast::BinaryOperator::StringConcat {
            return Ok(PlannerResult::Original(expr));
        }
        let is_list = |e: &Expr| {
            e.get_type(schema)
                .is_ok_and(|t| matches!(t, DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)))
        };
        if is_list(&expr.left) || is_list(&expr.right) {
            return Ok(PlannerResult::Original(expr));
        }
        let concat =
            Expr::BinaryExpr(BinaryExpr::new(Box::new(expr.left), Operator::StringConcat, Box::new(expr.right)));
        let check = Arc::new(ScalarUDF::new_from_impl(SizeCheck::new()));
        Ok(PlannerResult::Planned(Expr::ScalarFunction(ScalarFunction::new_udf(check, vec![concat]))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;

    async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<datafusion::arrow::record_batch::RecordBatch>> {
        ctx.sql(sql).await?.collect().await
    }

    fn guarded() -> SessionContext {
        let ctx = SessionContext::new();
        install(&ctx).unwrap();
        ctx
    }

    #[tokio::test]
    async fn a_function_outside_the_list_is_bounded_after_it_runs() {
        // `repeat` stays under its own bound (16 MB per batch); `string_to_array` with a NULL delimiter makes a
        // list element of every character, about five times the bytes: over the bound for every function.
        let sql = "SELECT sum(cardinality(string_to_array(repeat(chr(65 + (i % 26)::int), 2000), NULL))) \
                   FROM generate_series(1, 8192) AS t(i)";
        let plain = SessionContext::new();
        let n = run(&plain, sql).await.expect("DataFusion alone computes it");
        assert_eq!(n[0].column(0).as_primitive::<datafusion::arrow::datatypes::UInt64Type>().value(0), 8192 * 2000);
        let e = run(&guarded(), sql).await.expect_err("bounded").to_string();
        assert!(e.contains("string_to_array") && e.contains("64 MiB"), "{e}");
    }

    #[tokio::test]
    async fn wrapped_functions_behave_as_before() {
        let ctx = guarded();
        let sql = "SELECT arrow_cast(1, 'Int8') AS a, upper('x') AS u, get_field(named_struct('k', 2), 'k') AS g, \
                   date_trunc('day', TIMESTAMP '2026-12-02 08:00:00') AS d, abs(-3) AS b";
        let got = run(&ctx, sql).await.unwrap();
        let plain = run(&SessionContext::new(), sql).await.unwrap();
        assert_eq!(got, plain, "same values, names and types");
        // Functions made again for a session's settings stay bounded.
        let now = ctx.udf("now").unwrap();
        let mut options = ConfigOptions::new();
        options.execution.time_zone = Some("Europe/Berlin".into());
        let updated = now.inner().with_updated_config(&options).expect("now() follows the time zone");
        assert!(updated.inner().is::<BoundedFunction>());
    }
}
