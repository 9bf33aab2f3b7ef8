//! Planning errors in PostgreSQL's terms: a statement naming a table, column or function that does not exist gets
//! PostgreSQL's SQLSTATE (42P01, 42703, 42883) and message, with the closest existing names as a hint.
//!
//! DataFusion reports an unknown table or function as a generic planning error whose only detail is its text. ccmart
//! does not read that text: when planning fails, it looks at the statement itself — its table references against
//! the catalog, its function calls against the function registry — and names what is missing. Unknown columns are
//! DataFusion's typed `FieldNotFound`, which carries the column and the valid ones.

use super::QueryError;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{visit_expressions, Expr};
use std::ops::ControlFlow;

/// Names closer than this (normalised Levenshtein similarity) are offered as "did you mean".
const SIMILAR: f64 = 0.6;
/// At most this many names are offered.
const MAX_SUGGESTIONS: usize = 3;

/// Functions DataFusion's planner answers itself, without a registered function of the name.
const PLANNER_FUNCTIONS: &[&str] = &["unnest", "struct", "named_struct", "row", "make_map", "get_field"];

/// The error of a statement whose planning failed with `e`.
pub(crate) fn planning_error(state: &SessionState, statement: &DfStatement, e: DataFusionError) -> QueryError {
    if let DataFusionError::SchemaError(schema_error, _) = e.find_root() {
        if let SchemaError::FieldNotFound { field, valid_fields } = schema_error.as_ref() {
            let names: Vec<String> = valid_fields.iter().map(|c| c.name.clone()).collect();
            let shown = match &field.relation {
                Some(r) => format!("{r}.{}", field.name),
                None => field.name.clone(),
            };
            return QueryError::Undefined {
                sqlstate: "42703",
                message: format!("column \"{shown}\" does not exist"),
                hint: hint(&field.name, names.iter().map(String::as_str)),
            };
        }
        if let SchemaError::AmbiguousReference { field } = schema_error.as_ref() {
            return QueryError::Undefined {
                sqlstate: "42702",
                message: format!("column reference \"{}\" is ambiguous", field.name),
                hint: Some("qualify it with its table name or alias".into()),
            };
        }
    }
    if matches!(e.find_root(), DataFusionError::Plan(_)) {
        if let Some(missing) = missing_table(state, statement) {
            return missing;
        }
        if let Some(missing) = missing_function(state, statement) {
            return missing;
        }
    }
    super::classify(e)
}

/// The first table the statement reads that the catalog does not have.
fn missing_table(state: &SessionState, statement: &DfStatement) -> Option<QueryError> {
    let references = state.resolve_table_references(statement).ok()?;
    for reference in references {
        // `FROM unnest(…)`, `FROM generate_series(…)`: table functions, not tables.
        if reference.schema().is_none()
            && (state.table_functions().contains_key(reference.table())
                || PLANNER_FUNCTIONS.contains(&reference.table()))
        {
            continue;
        }
        let exists = state.schema_for_ref(reference.clone()).is_ok_and(|s| s.table_exist(reference.table()));
        if exists {
            continue;
        }
        let known: Vec<String> = state.schema_for_ref(reference.clone()).map(|s| s.table_names()).unwrap_or_default();
        return Some(QueryError::Undefined {
            sqlstate: "42P01",
            message: format!("relation \"{reference}\" does not exist"),
            hint: hint(reference.table(), known.iter().map(String::as_str)),
        });
    }
    None
}

/// The first function the statement calls that no registry has.
fn missing_function(state: &SessionState, statement: &DfStatement) -> Option<QueryError> {
    let DfStatement::Statement(statement) = statement else { return None };
    let known = |name: &str| {
        state.scalar_functions().contains_key(name)
            || state.aggregate_functions().contains_key(name)
            || state.window_functions().contains_key(name)
            || PLANNER_FUNCTIONS.contains(&name)
    };
    let mut missing = None;
    let _ = visit_expressions(statement.as_ref(), |e: &Expr| {
        if let Expr::Function(f) = e {
            let name = f.name.0.last().and_then(|p| p.as_ident()).map(|i| i.value.to_lowercase());
            if let Some(name) = name.filter(|n| !known(n)) {
                missing = Some(name);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    let name = missing?;
    let candidates: Vec<String> = state
        .scalar_functions()
        .keys()
        .chain(state.aggregate_functions().keys())
        .chain(state.window_functions().keys())
        .cloned()
        .collect();
    Some(QueryError::Undefined {
        sqlstate: "42883",
        message: format!("function {name} does not exist"),
        hint: hint(&name, candidates.iter().map(String::as_str)),
    })
}

/// "Perhaps you meant …" with the closest of `candidates`, if any is close.
fn hint<'a>(wanted: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    let wanted = wanted.to_lowercase();
    let mut scored: Vec<(f64, &str)> = candidates
        .map(|c| (strsim::normalized_levenshtein(&wanted, &c.to_lowercase()), c))
        .filter(|(score, _)| *score >= SIMILAR)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    let names: Vec<String> = scored.iter().take(MAX_SUGGESTIONS).map(|(_, n)| format!("\"{n}\"")).collect();
    (!names.is_empty()).then(|| format!("Perhaps you meant {}.", names.join(" or ")))
}

#[cfg(test)]
mod tests {
    use super::hint;

    #[test]
    fn close_names_are_suggested_and_far_ones_are_not() {
        let tables = ["interaction_fact", "interaction_resource_fact", "resource_", "media_type"];
        let offered = hint("interaction_facts", tables.iter().copied()).unwrap_or_default();
        assert!(offered.starts_with("Perhaps you meant \"interaction_fact\""), "{offered}");
        assert!(!offered.contains("media_type"), "{offered}");
        assert_eq!(hint("sales", tables.iter().copied()), None);
    }
}
