//! Saved reports: the SQL files of `queries/`, embedded at build time, listed by `GET /v1/reports` and run by
//! `GET /v1/reports/{name}` with parameters **bound as values** (DataFusion placeholders `$name`), never spliced
//! into the SQL text.
//!
//! A report file starts with comment lines: the first is its description; each `-- param: NAME:TYPE[=DEFAULT] text`
//! declares a parameter (`date` = `YYYY-MM-DD`, `text`, `int`). A parameter without a default is required.

use datafusion::scalar::ScalarValue;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

include!(concat!(env!("OUT_DIR"), "/saved_reports.rs"));

/// Type of a report parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParamKind {
    /// A day, `YYYY-MM-DD` (compared with the `day` partition columns).
    Date,
    /// Free text (e.g. a queue name or a LIKE pattern).
    Text,
    /// A 64-bit integer.
    Int,
}

/// One declared parameter.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReportParam {
    /// Name (the SQL uses `$name`).
    pub name: String,
    /// Type.
    pub kind: ParamKind,
    /// Default when the caller omits it; `None` = required.
    pub default: Option<String>,
    /// What it means.
    pub description: String,
}

/// One saved report.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Report {
    /// Name (the file name without `.sql`).
    pub name: String,
    /// First comment line.
    pub description: String,
    /// Declared parameters.
    pub params: Vec<ReportParam>,
    /// The SQL.
    #[serde(skip)]
    pub sql: String,
}

/// Parses a report file. Errors name the line.
pub fn parse_report(name: &str, text: &str) -> Result<Report, String> {
    let mut description = String::new();
    let mut params = Vec::new();
    for line in text.lines().map(str::trim).take_while(|l| l.starts_with("--")) {
        let body = line.trim_start_matches('-').trim();
        if let Some(decl) = body.strip_prefix("param:") {
            let decl = decl.trim();
            let (spec, what) = decl.split_once(char::is_whitespace).unwrap_or((decl, ""));
            let (name_kind, default) = match spec.split_once('=') {
                Some((a, d)) => (a, Some(d.to_string())),
                None => (spec, None),
            };
            let (pname, kind) =
                name_kind.split_once(':').ok_or_else(|| format!("report {name}: '{line}' must read NAME:TYPE"))?;
            let kind = match kind {
                "date" => ParamKind::Date,
                "text" => ParamKind::Text,
                "int" => ParamKind::Int,
                other => return Err(format!("report {name}: unknown parameter type '{other}' (date, text, int)")),
            };
            params.push(ReportParam { name: pname.to_string(), kind, default, description: what.trim().to_string() });
        } else if description.is_empty() {
            description = body.to_string();
        }
    }
    Ok(Report { name: name.to_string(), description, params, sql: text.to_string() })
}

/// Every embedded report, by name. The embedded files never change at run time, so they are parsed once.
pub fn saved_reports() -> Result<&'static BTreeMap<String, Report>, String> {
    static CATALOG: std::sync::LazyLock<Result<BTreeMap<String, Report>, String>> = std::sync::LazyLock::new(|| {
        SAVED_REPORTS.iter().map(|(n, t)| parse_report(n, t).map(|r| (n.to_string(), r))).collect()
    });
    CATALOG.as_ref().map_err(Clone::clone)
}

/// Checks and converts the caller's parameters (unknown names, missing required ones and malformed values are
/// refused with a message naming the parameter).
pub fn bind(report: &Report, given: &HashMap<String, String>) -> Result<HashMap<String, ScalarValue>, String> {
    if let Some(unknown) = given.keys().find(|k| !report.params.iter().any(|p| &p.name == *k)) {
        let known: Vec<&str> = report.params.iter().map(|p| p.name.as_str()).collect();
        return Err(format!("report {} has no parameter '{unknown}' (parameters: {known:?})", report.name));
    }
    let mut out = HashMap::new();
    for p in &report.params {
        let raw =
            given.get(&p.name).or(p.default.as_ref()).ok_or_else(|| format!("parameter '{}' is required", p.name))?;
        let value = match p.kind {
            ParamKind::Date => {
                let d = chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
                    .map_err(|_| format!("parameter '{}' must be a date like 2026-11-24, got '{raw}'", p.name))?;
                ScalarValue::Utf8(Some(d.format("%Y-%m-%d").to_string()))
            }
            ParamKind::Int => ScalarValue::Int64(Some(
                raw.parse().map_err(|_| format!("parameter '{}' must be an integer, got '{raw}'", p.name))?,
            )),
            ParamKind::Text => ScalarValue::Utf8(Some(raw.clone())),
        };
        out.insert(p.name.clone(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_saved_report_parses_and_declares_what_it_uses() {
        let reports = saved_reports().unwrap();
        assert!(reports.len() >= 8);
        for r in reports.values() {
            assert!(!r.description.is_empty(), "{} has a description", r.name);
            for p in &r.params {
                assert!(r.sql.contains(&format!("${}", p.name)), "{} uses ${}", r.name, p.name);
            }
        }
    }

    #[test]
    fn parameters_are_checked() {
        let r = parse_report("x", "-- X\n-- param: from:date=2000-01-01 first day\n-- param: n:int limit\nSELECT 1")
            .unwrap();
        assert_eq!(r.params.len(), 2);
        let mut given = HashMap::new();
        assert!(bind(&r, &given).unwrap_err().contains("'n' is required"));
        given.insert("n".to_string(), "x".to_string());
        assert!(bind(&r, &given).unwrap_err().contains("must be an integer"));
        given.insert("n".to_string(), "5".to_string());
        given.insert("from".to_string(), "yesterday".to_string());
        assert!(bind(&r, &given).unwrap_err().contains("must be a date"));
        given.insert("from".to_string(), "2026-11-24".to_string());
        let b = bind(&r, &given).unwrap();
        assert_eq!(b["n"], ScalarValue::Int64(Some(5)));
        given.insert("bogus".to_string(), "1".to_string());
        assert!(bind(&r, &given).unwrap_err().contains("no parameter 'bogus'"));
    }
}
