//! PostgreSQL's answers where DataFusion's would differ, for the queries BI tools and drivers send.
//!
//! ccmart speaks PostgreSQL to its clients, so a query written for PostgreSQL must mean what it means there:
//! - **Times are instants.** Every context runs with a session time zone (UTC unless the session sets one), so
//!   `now()`, `'…+01'::timestamptz` and [`to_timestamp`](PgToTimestamp) are `timestamptz`. DataFusion's own
//!   `to_timestamp(integer)` reads the epoch seconds as wall-clock time of the session zone (one hour off in
//!   Berlin); ccmart's reads them as the instant they are, as PostgreSQL does.
//! - **`AT TIME ZONE`** is PostgreSQL's `timezone(zone, ts)`: a `timestamptz` becomes the wall-clock time of the
//!   zone (a `timestamp`), a `timestamp` is read as wall-clock time of the zone and becomes the instant. DataFusion
//!   only relabels the zone, so the statement is rewritten to the function ([`rewrite`]).
//! - **What drivers ask on connect:** `version()` in PostgreSQL's form (SQLAlchemy and others parse it),
//!   `current_user` / `session_user` as the login name, `current_setting(name)` from the session's settings, and
//!   the calls connection pools make on reset (`pg_advisory_unlock_all()`), which change nothing here.

use super::SessionSettings;
use datafusion::arrow::array::{Array, ArrayRef, StringArray, TimestampNanosecondArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{FunctionRegistry, SessionState};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    visit_expressions_mut, DataType as SqlDataType, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList,
    FunctionArguments, Ident, ObjectName, Query, SelectItem, SetExpr, Statement, TimezoneInfo, VisitMut, VisitorMut,
};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;

/// The PostgreSQL version ccmart answers as (`server_version`, `version()`): the protocol and catalog it speaks.
pub const SERVER_VERSION: &str = "16.6";
/// [`SERVER_VERSION`] as `server_version_num`.
pub const SERVER_VERSION_NUM: &str = "160006";
/// The session time zone when a client sets none.
pub const DEFAULT_TIME_ZONE: &str = "UTC";

/// What `version()` answers: PostgreSQL's form, which tools parse for the major and minor version, naming ccmart.
pub fn version_text() -> String {
    format!(
        "PostgreSQL {SERVER_VERSION} (ccmart {}) on {}-linux, compiled by rustc, 64-bit",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    )
}

/// Registers the functions every context has (HTTP and PostgreSQL protocol alike). Call before the size guard is
/// installed, so they are bounded like every other function.
pub fn install(ctx: &SessionContext) {
    let zone = DEFAULT_TIME_ZONE.to_string();
    ctx.register_udf(ScalarUDF::new_from_impl(PgToTimestamp::new(zone.clone())));
    ctx.register_udf(ScalarUDF::new_from_impl(PgTimezone::new(zone.clone())));
    ctx.register_udf(ScalarUDF::new_from_impl(PgToChar::new(zone)));
    ctx.register_udf(ScalarUDF::new_from_impl(ConstantText::new("version", 0, Some(version_text()))));
    // Pools call it when a connection is given back; ccmart takes no advisory locks, so there is none to release.
    ctx.register_udf(ScalarUDF::new_from_impl(ConstantText::new("pg_advisory_unlock_all", 0, None)));
    // No type of an extension (hstore, citext …) exists here; drivers probe for them on connect.
    ctx.register_udf(ScalarUDF::new_from_impl(ConstantText::new("to_regtype", 1, None)));
    // No mart column is backed by a sequence.
    ctx.register_udf(ScalarUDF::new_from_impl(ConstantText::new("pg_get_serial_sequence", 2, None)));
    install_identity(ctx, &SessionSettings::default());
}

fn install_identity(registry: &dyn RegisterUdf, settings: &SessionSettings) {
    let user = settings.user.clone().unwrap_or_else(|| "ccmart".to_string());
    for name in ["current_user", "session_user", "user", "current_role"] {
        registry.add(ScalarUDF::new_from_impl(ConstantText::new(name, 0, Some(user.clone()))));
    }
    registry.add(ScalarUDF::new_from_impl(CurrentSetting::new(settings)));
}

/// Registers what depends on the session (its login name and settings) into one statement's state.
pub fn install_session(state: &mut SessionState, settings: &SessionSettings) {
    install_identity(&StateRegistry(std::sync::Mutex::new(state)), settings);
}

/// Somewhere functions can be registered (a context, or one statement's state).
trait RegisterUdf {
    fn add(&self, udf: ScalarUDF);
}

impl RegisterUdf for SessionContext {
    fn add(&self, udf: ScalarUDF) {
        self.register_udf(udf);
    }
}

struct StateRegistry<'a>(std::sync::Mutex<&'a mut SessionState>);

impl RegisterUdf for StateRegistry<'_> {
    fn add(&self, udf: ScalarUDF) {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Registering a scalar function into a state cannot fail; the previous one of the name is replaced.
        let _ = state.register_udf(Arc::new(udf));
    }
}

/// Rewrites what DataFusion would plan with another meaning than PostgreSQL's: `x AT TIME ZONE z` becomes
/// `timezone(z, x)` ([`PgTimezone`]), and unnamed result columns get PostgreSQL's names ([`label_columns`]).
///
/// The labels come first, from the statement as the client wrote it; then the constructs DataFusion cannot plan are
/// rewritten ([`super::pg_rewrite`]).
pub fn rewrite(statement: &mut Statement) {
    let _ = statement.visit(&mut ColumnLabels);
    super::pg_rewrite::rewrite_for_datafusion(statement);
    let _ = visit_expressions_mut(statement, |e: &mut Expr| {
        if let Expr::AtTimeZone { timestamp, time_zone } = e {
            let args = vec![
                FunctionArg::Unnamed(FunctionArgExpr::Expr((**time_zone).clone())),
                FunctionArg::Unnamed(FunctionArgExpr::Expr((**timestamp).clone())),
            ];
            *e = Expr::Function(Function {
                name: ObjectName::from(vec![Ident::new("timezone")]),
                uses_odbc_syntax: false,
                parameters: FunctionArguments::None,
                args: FunctionArguments::List(FunctionArgumentList {
                    duplicate_treatment: None,
                    args,
                    clauses: vec![],
                }),
                filter: None,
                null_treatment: None,
                over: None,
                within_group: vec![],
            });
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Names the unnamed result columns of every `SELECT` as PostgreSQL does (`count`, `sum`, `?column?`, `case`,
/// `int4`, …) instead of DataFusion's expression text (`count(*)`, `Int64(1)`), so tools that read columns by
/// name (pandas, Node `pg`, BI tools) see PostgreSQL's names. DataFusion refuses two result columns of one name,
/// which PostgreSQL allows: a name another column of the same `SELECT` already has is not given.
struct ColumnLabels;

impl VisitorMut for ColumnLabels {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        label_set_expr(&mut query.body);
        ControlFlow::Continue(())
    }
}

fn label_set_expr(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => label_columns(&mut select.projection),
        SetExpr::SetOperation { left, right, .. } => {
            label_set_expr(left);
            label_set_expr(right);
        }
        _ => {}
    }
}

/// Gives each unnamed projection item PostgreSQL's name when no other item of the projection has that name.
pub fn label_columns(projection: &mut [SelectItem]) {
    let names: Vec<Option<String>> = projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) => Some(column_label(e)),
            SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
            _ => None,
        })
        .collect();
    for (i, item) in projection.iter_mut().enumerate() {
        let SelectItem::UnnamedExpr(expr) = item else { continue };
        if matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
            continue;
        }
        let Some(label) = names[i].clone() else { continue };
        let unique = names.iter().enumerate().all(|(j, n)| j == i || n.as_deref() != Some(label.as_str()));
        if unique {
            *item = SelectItem::ExprWithAlias { expr: expr.clone(), alias: Ident::with_quote('"', label) };
        }
    }
}

/// PostgreSQL's name for an unnamed result column (its `FigureColname`).
fn column_label(e: &Expr) -> String {
    const UNNAMED: &str = "?column?";
    let named = |s: &str| s.to_string();
    match e {
        Expr::Identifier(i) => i.value.clone(),
        Expr::CompoundIdentifier(parts) => parts.last().map_or_else(|| named(UNNAMED), |p| p.value.clone()),
        Expr::Function(f) => {
            f.name.0.last().and_then(|p| p.as_ident()).map_or_else(|| named(UNNAMED), |i| i.value.to_lowercase())
        }
        Expr::Nested(inner) => column_label(inner),
        Expr::Cast { expr, data_type, .. } => match column_label(expr) {
            l if l == UNNAMED => type_label(data_type).map_or_else(|| named(UNNAMED), named),
            l => l,
        },
        Expr::TypedString(t) => type_label(&t.data_type).map_or_else(|| named(UNNAMED), named),
        Expr::Case { .. } => named("case"),
        Expr::Array(_) => named("array"),
        Expr::Exists { .. } => named("exists"),
        Expr::Extract { .. } => named("extract"),
        Expr::Substring { .. } => named("substring"),
        Expr::Trim { .. } => named("btrim"),
        Expr::Position { .. } => named("position"),
        Expr::Overlay { .. } => named("overlay"),
        Expr::Ceil { .. } => named("ceil"),
        Expr::Floor { .. } => named("floor"),
        Expr::Interval(_) => named("interval"),
        Expr::AtTimeZone { .. } => named("timezone"),
        _ => named(UNNAMED),
    }
}

/// The name PostgreSQL gives a cast to `t` (its type's `typname`), for the common types.
fn type_label(t: &SqlDataType) -> Option<&'static str> {
    Some(match t {
        SqlDataType::Int(_) | SqlDataType::Integer(_) | SqlDataType::Int4(_) => "int4",
        SqlDataType::BigInt(_) | SqlDataType::Int8(_) => "int8",
        SqlDataType::SmallInt(_) | SqlDataType::Int2(_) => "int2",
        SqlDataType::Text | SqlDataType::String(_) => "text",
        SqlDataType::Varchar(_) | SqlDataType::CharacterVarying(_) => "varchar",
        SqlDataType::Double(_) | SqlDataType::DoublePrecision | SqlDataType::Float8 => "float8",
        SqlDataType::Real | SqlDataType::Float4 => "float4",
        SqlDataType::Numeric(_) | SqlDataType::Decimal(_) => "numeric",
        SqlDataType::Boolean | SqlDataType::Bool => "bool",
        SqlDataType::Date => "date",
        SqlDataType::Interval { .. } => "interval",
        SqlDataType::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => "timestamptz",
        SqlDataType::Timestamp(_, _) => "timestamp",
        _ => return None,
    })
}

/// A function answering one text value (or NULL) whatever its arguments.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ConstantText {
    name: String,
    value: Option<String>,
    signature: Signature,
}

impl ConstantText {
    fn new(name: &str, args: usize, value: Option<String>) -> Self {
        let signature =
            if args == 0 { Signature::nullary(Volatility::Stable) } else { Signature::any(args, Volatility::Stable) };
        ConstantText { name: name.to_string(), value, signature }
    }
}

impl ScalarUDFImpl for ConstantText {
    fn name(&self) -> &str {
        &self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(self.value.clone())))
    }
}

/// The settings every session starts with (lower-case names), as `current_setting` answers them before any `SET`.
pub(crate) fn default_settings() -> BTreeMap<String, String> {
    [
        ("server_version", SERVER_VERSION),
        ("server_version_num", SERVER_VERSION_NUM),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("datestyle", "ISO, MDY"),
        ("intervalstyle", "postgres"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("search_path", "public"),
        ("default_transaction_read_only", "on"),
        ("transaction_read_only", "on"),
        ("transaction_isolation", "read committed"),
        ("default_transaction_isolation", "read committed"),
        ("max_identifier_length", "63"),
        ("is_superuser", "off"),
        ("application_name", ""),
        ("extra_float_digits", "1"),
        ("bytea_output", "hex"),
        ("lc_messages", "C"),
        ("lc_monetary", "C"),
        ("lc_numeric", "C"),
        ("lc_time", "C"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// `current_setting(name [, missing_ok])`: the session's value of a setting, as PostgreSQL answers it; an unknown
/// name is an error (42704) unless `missing_ok`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CurrentSetting {
    values: BTreeMap<String, String>,
    signature: Signature,
}

impl CurrentSetting {
    fn new(settings: &SessionSettings) -> Self {
        let mut values = default_settings();
        values.extend(settings.values.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())));
        values.insert("timezone".into(), settings.time_zone.clone());
        let signature = Signature::one_of(
            vec![
                TypeSignature::String(1),
                TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
                TypeSignature::Exact(vec![DataType::Utf8View, DataType::Boolean]),
            ],
            Volatility::Stable,
        );
        CurrentSetting { values, signature }
    }

    fn lookup(&self, name: &str, missing_ok: bool) -> Result<Option<String>> {
        match self.values.get(&name.to_ascii_lowercase()) {
            Some(v) => Ok(Some(v.clone())),
            None if missing_ok => Ok(None),
            None => Err(DataFusionError::External(Box::new(UnknownSetting(name.to_string())))),
        }
    }
}

/// `current_setting` of a name PostgreSQL does not know either (SQLSTATE 42704).
#[derive(Debug, thiserror::Error)]
#[error("unrecognized configuration parameter \"{0}\"")]
pub struct UnknownSetting(pub String);

impl ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let missing_ok = match args.args.get(1) {
            None => false,
            Some(ColumnarValue::Scalar(ScalarValue::Boolean(b))) => b.unwrap_or(false),
            Some(_) => {
                return Err(DataFusionError::NotImplemented(
                    "current_setting's missing_ok must be a constant".to_string(),
                ))
            }
        };
        let Some(name) = args.args.first() else {
            return Err(DataFusionError::Plan("current_setting needs the name of a setting".into()));
        };
        match name {
            ColumnarValue::Scalar(s) => {
                let name = scalar_text(s)?;
                let value = match name {
                    Some(n) => self.lookup(&n, missing_ok)?,
                    None => None,
                };
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(value)))
            }
            ColumnarValue::Array(a) => {
                let names = cast(a, &DataType::Utf8)?;
                let names = names
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| DataFusionError::Internal("current_setting: text did not cast to Utf8".into()))?;
                let values = names
                    .iter()
                    .map(|n| n.map_or(Ok(None), |n| self.lookup(n, missing_ok)))
                    .collect::<Result<StringArray>>()?;
                Ok(ColumnarValue::Array(Arc::new(values)))
            }
        }
    }
}

fn scalar_text(s: &ScalarValue) -> Result<Option<String>> {
    match s {
        ScalarValue::Utf8(v) | ScalarValue::Utf8View(v) | ScalarValue::LargeUtf8(v) => Ok(v.clone()),
        ScalarValue::Null => Ok(None),
        other => Err(DataFusionError::Plan(format!("expected text, got {}", other.data_type()))),
    }
}

/// `to_timestamp`: epoch seconds (integer, decimal or float) are the instant they count, as a `timestamptz` of
/// the session zone; text with a format is DataFusion's (chrono formats).
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgToTimestamp {
    /// DataFusion's function, configured for the session zone.
    inner: Arc<ScalarUDF>,
    zone: String,
}

impl PgToTimestamp {
    fn new(zone: String) -> Self {
        let mut config = ConfigOptions::default();
        config.execution.time_zone = Some(zone.clone());
        PgToTimestamp { inner: datafusion::functions::datetime::to_timestamp(&config), zone }
    }
}

fn is_integer(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
    )
}

impl ScalarUDFImpl for PgToTimestamp {
    fn name(&self) -> &str {
        "to_timestamp"
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        self.inner.return_type(args)
    }
    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        let zone = config.execution.time_zone.clone().unwrap_or_else(|| DEFAULT_TIME_ZONE.to_string());
        Some(ScalarUDF::new_from_impl(PgToTimestamp::new(zone)))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let first = args.args.first().map(|a| a.data_type());
        match first {
            // DataFusion casts integers to a zone-less timestamp first, then to the session zone, which reads them
            // as local time; as instants they go straight to the zone.
            Some(t) if args.args.len() == 1 && is_integer(&t) => {
                let zone: Arc<str> = Arc::from(self.zone.as_str());
                let as_utc = DataType::Timestamp(TimeUnit::Second, Some(Arc::from("UTC")));
                let target = DataType::Timestamp(TimeUnit::Nanosecond, Some(zone));
                let seconds = args.args[0].cast_to(&DataType::Int64, None)?;
                on_array(&seconds, |a| Ok(cast(&cast(a, &as_utc)?, &target)?))
            }
            _ => self.inner.invoke_with_args(args),
        }
    }
}

/// PostgreSQL's `timezone(zone, ts)`, what `ts AT TIME ZONE zone` means there: a `timestamptz` becomes the
/// wall-clock `timestamp` of `zone`; a `timestamp` is read as wall-clock time of `zone` and becomes the instant
/// (a `timestamptz` shown in the session zone).
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgTimezone {
    session_zone: String,
    signature: Signature,
}

impl PgTimezone {
    fn new(session_zone: String) -> Self {
        PgTimezone { session_zone, signature: Signature::any(2, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for PgTimezone {
    fn name(&self) -> &str {
        "timezone"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match args.get(1) {
            Some(DataType::Timestamp(_, Some(_))) => Ok(DataType::Timestamp(TimeUnit::Nanosecond, None)),
            Some(DataType::Timestamp(_, None) | DataType::Date32 | DataType::Date64 | DataType::Null)
            | Some(DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8) => {
                Ok(DataType::Timestamp(TimeUnit::Nanosecond, Some(Arc::from(self.session_zone.as_str()))))
            }
            Some(other) => {
                Err(DataFusionError::Plan(format!("AT TIME ZONE needs a timestamp or timestamptz, got {other}")))
            }
            None => Err(DataFusionError::Plan("timezone(zone, timestamp) takes two arguments".into())),
        }
    }
    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        let zone = config.execution.time_zone.clone().unwrap_or_else(|| DEFAULT_TIME_ZONE.to_string());
        Some(ScalarUDF::new_from_impl(PgTimezone::new(zone)))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [zone, ts] = args.args.as_slice() else {
            return Err(DataFusionError::Plan("timezone(zone, timestamp) takes two arguments".into()));
        };
        let ColumnarValue::Scalar(zone) = zone else {
            return Err(DataFusionError::NotImplemented(
                "AT TIME ZONE with a zone that differs per row; give the zone as a constant".into(),
            ));
        };
        let Some(zone) = scalar_text(zone)? else {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from(args.return_field.data_type())?));
        };
        let zone = super::SessionSettings::parse_time_zone(&zone)
            .map_err(|m| DataFusionError::External(Box::new(InvalidTimeZone(m))))?;
        on_array(ts, |a| at_time_zone(a, &zone, &self.session_zone))
    }
}

/// PostgreSQL's `to_char(timestamp|timestamptz|date, template)`: the template's patterns (`YYYY-MM-DD HH24:MI`,
/// `FMDD Mon`, …) as PostgreSQL reads them (see [`super::pg_rewrite::chrono_format`]), a `timestamptz` shown in the
/// session's time zone as PostgreSQL shows it. (DataFusion's `to_char` takes chrono's `%Y-%m-%d` and answered a
/// PostgreSQL template with the template itself.) A pattern ccmart cannot reproduce exactly is refused (0A000)
/// rather than approximated.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgToChar {
    session_zone: String,
    signature: Signature,
}

impl PgToChar {
    fn new(session_zone: String) -> Self {
        PgToChar { session_zone, signature: Signature::any(2, Volatility::Stable) }
    }
}

/// A `to_char` template pattern ccmart does not reproduce (SQLSTATE 0A000).
#[derive(Debug, thiserror::Error)]
#[error("to_char: {0}")]
pub struct UnsupportedTemplate(pub String);

impl ScalarUDFImpl for PgToChar {
    fn name(&self) -> &str {
        "to_char"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match args.first() {
            Some(DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 | DataType::Null) => Ok(DataType::Utf8),
            Some(other) => Err(DataFusionError::Plan(format!(
                "to_char of {other} is not supported: ccmart formats timestamps, timestamptz and dates \
                 (for numbers use round() or a cast)"
            ))),
            None => Err(DataFusionError::Plan("to_char(value, template) takes two arguments".into())),
        }
    }
    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        let zone = config.execution.time_zone.clone().unwrap_or_else(|| DEFAULT_TIME_ZONE.to_string());
        Some(ScalarUDF::new_from_impl(PgToChar::new(zone)))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [value, template] = args.args.as_slice() else {
            return Err(DataFusionError::Plan("to_char(value, template) takes two arguments".into()));
        };
        let ColumnarValue::Scalar(template) = template else {
            return Err(DataFusionError::NotImplemented(
                "to_char with a template that differs per row; give the template as a constant".into(),
            ));
        };
        let Some(template) = scalar_text(template)? else {
            return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)));
        };
        let format = super::pg_rewrite::chrono_format(&template)
            .map_err(|m| DataFusionError::External(Box::new(UnsupportedTemplate(m))))?;
        let tz: datafusion::arrow::array::timezone::Tz = self.session_zone.parse()?;
        on_array(value, |a| {
            let local: ArrayRef = match a.data_type() {
                // The instant as the session zone's wall clock, then formatted as a zone-less time; `TZ`/`OF`
                // patterns are refused by chrono_format only where chrono cannot print them.
                DataType::Timestamp(_, Some(_)) => {
                    let utc = cast(a, &DataType::Timestamp(TimeUnit::Nanosecond, Some(Arc::from("UTC"))))?;
                    let utc = utc
                        .as_any()
                        .downcast_ref::<TimestampNanosecondArray>()
                        .ok_or_else(|| DataFusionError::Internal("timestamp did not cast to nanoseconds".into()))?
                        .clone();
                    let mut out = datafusion::arrow::array::StringBuilder::new();
                    for v in utc.iter() {
                        match v {
                            Some(v) => {
                                use chrono::TimeZone as _;
                                let instant = chrono::DateTime::from_timestamp_nanos(v);
                                let local = tz.from_utc_datetime(&instant.naive_utc());
                                out.append_value(formatted(local.format(&format))?);
                            }
                            None => out.append_null(),
                        }
                    }
                    return Ok(Arc::new(out.finish()));
                }
                DataType::Null => return Ok(datafusion::arrow::array::new_null_array(&DataType::Utf8, a.len())),
                _ => cast(a, &DataType::Timestamp(TimeUnit::Nanosecond, None))?,
            };
            let naive = local
                .as_any()
                .downcast_ref::<TimestampNanosecondArray>()
                .ok_or_else(|| DataFusionError::Internal("timestamp did not cast to nanoseconds".into()))?;
            let mut out = datafusion::arrow::array::StringBuilder::new();
            for v in naive.iter() {
                match v {
                    Some(v) => {
                        let t = chrono::DateTime::from_timestamp_nanos(v).naive_utc();
                        out.append_value(formatted(t.format(&format))?);
                    }
                    None => out.append_null(),
                }
            }
            Ok(Arc::new(out.finish()))
        })
    }
}

/// A chrono formatting as text; a pattern the value cannot show (a zone of a zone-less timestamp) is refused
/// instead of panicking as `to_string` would.
fn formatted(f: impl std::fmt::Display) -> Result<String> {
    use std::fmt::Write as _;
    let mut out = String::new();
    write!(out, "{f}").map_err(|_| {
        DataFusionError::External(Box::new(UnsupportedTemplate(
            "the template shows a time zone, which a timestamp without time zone does not have".into(),
        )))
    })?;
    Ok(out)
}

/// Applies an array kernel to a value, keeping a scalar a scalar (so constants still fold).
fn on_array(value: &ColumnarValue, kernel: impl FnOnce(&ArrayRef) -> Result<ArrayRef>) -> Result<ColumnarValue> {
    match value {
        ColumnarValue::Array(a) => Ok(ColumnarValue::Array(kernel(a)?)),
        ColumnarValue::Scalar(s) => {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&kernel(&s.to_array()?)?, 0)?))
        }
    }
}

/// A time zone `AT TIME ZONE` cannot use (SQLSTATE 22023).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidTimeZone(pub String);

fn at_time_zone(array: &ArrayRef, zone: &str, session_zone: &str) -> Result<ArrayRef> {
    let tz: datafusion::arrow::array::timezone::Tz = zone.parse()?;
    match array.data_type() {
        DataType::Timestamp(_, Some(_)) => {
            // The instant's wall-clock time in `zone`, as a zone-less timestamp.
            let utc = cast(array, &DataType::Timestamp(TimeUnit::Nanosecond, Some(Arc::from("UTC"))))?;
            let utc = utc
                .as_any()
                .downcast_ref::<TimestampNanosecondArray>()
                .ok_or_else(|| DataFusionError::Internal("timestamp did not cast to nanoseconds".into()))?;
            let local: TimestampNanosecondArray = utc.unary_opt(|v| {
                use chrono::TimeZone as _;
                let instant = chrono::DateTime::from_timestamp_nanos(v);
                tz.from_utc_datetime(&instant.naive_utc()).naive_local().and_utc().timestamp_nanos_opt()
            });
            Ok(Arc::new(local))
        }
        _ => {
            // Wall-clock time of `zone` (arrow's zone-less → zoned cast reads it so), shown in the session zone.
            let naive = cast(array, &DataType::Timestamp(TimeUnit::Nanosecond, None))?;
            let instant = cast(&naive, &DataType::Timestamp(TimeUnit::Nanosecond, Some(Arc::from(zone))))?;
            Ok(cast(&instant, &DataType::Timestamp(TimeUnit::Nanosecond, Some(Arc::from(session_zone))))?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;
    use datafusion::prelude::SessionConfig;

    fn context(zone: &str) -> SessionContext {
        let mut config = SessionConfig::new();
        config.options_mut().execution.time_zone = Some(DEFAULT_TIME_ZONE.to_string());
        let base = SessionContext::new_with_config(config);
        install(&base);
        let settings = SessionSettings { time_zone: zone.to_string(), ..SessionSettings::default() };
        crate::query::QueryEngine::session_context(&base, &settings)
    }

    async fn text(ctx: &SessionContext, sql: &str) -> String {
        let mut statement = datafusion::sql::sqlparser::parser::Parser::parse_sql(
            &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
            sql,
        )
        .unwrap()
        .remove(0);
        rewrite(&mut statement);
        let plan = ctx
            .state()
            .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(statement)))
            .await
            .unwrap();
        let batches = ctx.execute_logical_plan(plan).await.unwrap().collect().await.unwrap();
        let column = cast(batches[0].column(0), &DataType::Utf8).unwrap();
        column.as_string::<i32>().value(0).to_string()
    }

    /// PostgreSQL: `SET TIME ZONE 'Europe/Berlin'; SELECT to_timestamp(0)` is `1970-01-01 01:00:00+01`;
    /// `SELECT to_timestamp(0) AT TIME ZONE 'UTC'` is the timestamp `1970-01-01 00:00:00`;
    /// `SELECT timestamp '2026-12-01 08:00:00' AT TIME ZONE 'America/New_York'` is the instant 13:00 UTC.
    #[tokio::test]
    async fn times_are_instants_shown_in_the_session_zone() {
        let berlin = context("Europe/Berlin");
        assert_eq!(text(&berlin, "SELECT to_timestamp(0)").await, "1970-01-01T01:00:00+01:00");
        assert_eq!(text(&berlin, "SELECT to_timestamp(0) AT TIME ZONE 'UTC'").await, "1970-01-01T00:00:00");
        let utc = context("UTC");
        assert_eq!(text(&utc, "SELECT to_timestamp(86400)").await, "1970-01-02T00:00:00Z");
        assert_eq!(
            text(&utc, "SELECT timestamp '2026-12-01 08:00:00' AT TIME ZONE 'America/New_York'").await,
            "2026-12-01T13:00:00Z"
        );
    }

    /// PostgreSQL 15 (`SET TIME ZONE 'Europe/Berlin'`): `to_char(to_timestamp(0), 'YYYY-MM-DD HH24:MI')` is
    /// `1970-01-01 01:00`; `to_char(to_timestamp(0) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI')` is
    /// `1970-01-01 00:00`; `to_char(timestamp '2026-03-05 07:08:09.123456', 'FMDD Mon YYYY HH24:MI:SS.MS')` is
    /// `5 Mar 2026 07:08:09.123`; `to_char(date '2026-03-05', 'DD/MM/YYYY')` is `05/03/2026`.
    #[tokio::test]
    async fn to_char_reads_postgresql_templates_in_the_session_zone() {
        let berlin = context("Europe/Berlin");
        assert_eq!(text(&berlin, "SELECT to_char(to_timestamp(0), 'YYYY-MM-DD HH24:MI')").await, "1970-01-01 01:00");
        assert_eq!(
            text(&berlin, "SELECT to_char(to_timestamp(0) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI')").await,
            "1970-01-01 00:00"
        );
        assert_eq!(
            text(&berlin, "SELECT to_char(timestamp '2026-03-05 07:08:09.123456', 'FMDD Mon YYYY HH24:MI:SS.MS')")
                .await,
            "5 Mar 2026 07:08:09.123"
        );
        assert_eq!(text(&berlin, "SELECT to_char(date '2026-03-05', 'DD/MM/YYYY')").await, "05/03/2026");
    }

    #[test]
    fn unnamed_columns_get_postgresql_names_unless_two_would_share_one() {
        let sql =
            "SELECT count(*), 1, sum(x), x, t.y, CASE WHEN true THEN 1 END, 1::int, x::text, max(a), max(b) FROM t";
        let mut statement = datafusion::sql::sqlparser::parser::Parser::parse_sql(
            &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
            sql,
        )
        .unwrap()
        .remove(0);
        rewrite(&mut statement);
        let Statement::Query(q) = statement else { panic!("a query") };
        let SetExpr::Select(select) = *q.body else { panic!("a select") };
        let names: Vec<Option<String>> = select
            .projection
            .iter()
            .map(|i| match i {
                SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
                _ => None,
            })
            .collect();
        // `x::text` would be `x`, which the column `x` already is; `max` twice: neither gets the name.
        let expected = ["count", "?column?", "sum", "", "", "case", "int4", "", "", ""];
        let expected: Vec<Option<String>> = expected.iter().map(|n| (!n.is_empty()).then(|| n.to_string())).collect();
        assert_eq!(names, expected);
    }
}
