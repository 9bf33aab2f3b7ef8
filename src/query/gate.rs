//! The read-only statement gate: the one place that decides whether a piece of SQL may be planned and run, for
//! every path that runs SQL (HTTP `/v1/query` and saved reports, pgwire simple and extended queries, cursors, and
//! the statement inside `EXPLAIN`).
//!
//! Three checks, cheapest first, each refusing with a precise error before any work the next one would do:
//! 1. [`check_text`] — on the raw text, without recursion: the statement's size and an upper bound of how deeply
//!    its syntax tree will nest. DataFusion's parser counts only recursive constructs; a left-deep `1+1+…`, a
//!    5,000-branch `UNION ALL`, a long `AND` chain or `ARRAY<ARRAY<…>>` 3,000 deep parse without its counter
//!    noticing, and then the planner, the optimizer and `Drop` recurse over them until the stack overflows — which
//!    aborts the process. The bound counts, per parenthesis level, the operators a chain strings together.
//! 2. [`check_statement`] — on the parsed statement: only queries and `EXPLAIN` of a query; no `SELECT … INTO`
//!    (which creates a table every session would see), no data-modifying CTE.
//! 3. [`check_plan`] — on the logical plan: DataFusion's own verifier with DDL, DML and statements denied (so
//!    `EXPLAIN ANALYZE COPY …` and anything a compatibility rewrite produced are caught whatever their spelling),
//!    and the plan's size once every shared subtree is counted where it is used (CTEs referencing CTEs double a
//!    plan per level: a 1.2 KB query can stand for 2^24 scans).
//!
//! All three run on the SQL threads ([`super::workers`]), whose stacks are far larger than anything that passes
//! check 1 needs.

use super::QueryError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SQLOptions;
use datafusion::sql::sqlparser::ast::{self, SetExpr, Statement, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

/// Largest statement accepted, in bytes (the same bound as an HTTP request body).
pub const MAX_STATEMENT_BYTES: usize = 1024 * 1024;

/// Largest nesting a statement may reach: parentheses plus the operators chained at each level. Generous for any
/// report or BI tool (a 300-term `OR` filter stays well inside); far below what would exhaust a SQL thread's stack.
pub const MAX_NESTING: usize = 1000;

/// Largest parenthesis nesting inside one string literal. `arrow_cast(x, 'List(List(…))')` parses its type name
/// recursively, outside the SQL parser's counter.
pub const MAX_LITERAL_NESTING: usize = 64;

/// Largest logical plan, in nodes, counting a shared subtree once per use.
pub const MAX_PLAN_NODES: u64 = 10_000;

fn too_complex(message: String) -> QueryError {
    QueryError::TooComplex(message)
}

/// Check 1: size and nesting of the raw text, in one pass over its tokens (no recursion, no syntax tree).
pub fn check_text(sql: &str) -> Result<(), QueryError> {
    if sql.len() > MAX_STATEMENT_BYTES {
        return Err(too_complex(format!(
            "the statement has {} bytes; at most {MAX_STATEMENT_BYTES} are accepted",
            sql.len()
        )));
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .map_err(|e| QueryError::Syntax(format!("sql parser error: {e}")))?;
    let nesting = nesting_bound(&tokens);
    if nesting.depth > MAX_NESTING {
        return Err(too_complex(format!(
            "the statement nests {} levels deep (parentheses and chained operators such as + - AND OR || UNION \
             JOIN ::); at most {MAX_NESTING} are accepted — split it, or use IN (...) instead of long OR chains",
            nesting.depth
        )));
    }
    if nesting.literal > MAX_LITERAL_NESTING {
        return Err(too_complex(format!(
            "a string literal nests {} parentheses (a type name for arrow_cast?); at most {MAX_LITERAL_NESTING} are \
             accepted",
            nesting.literal
        )));
    }
    Ok(())
}

/// What [`nesting_bound`] found.
#[derive(Debug, Default, PartialEq, Eq)]
struct Nesting {
    /// Upper bound of the syntax tree's depth.
    depth: usize,
    /// Deepest parenthesis nesting inside one string literal.
    literal: usize,
}

/// Per open bracket level: operators chained since the last list separator or clause keyword, and set
/// operations / joins chained since the level opened (those nest however the clauses between them read).
#[derive(Debug, Default, Clone, Copy)]
struct Level {
    chain: usize,
    sets: usize,
}

/// An upper bound of the depth of the syntax tree `tokens` parse into: at every token, the open brackets plus the
/// operators chained at each open level. Every operator may add a level (left-deep chains do); commas and clause
/// keywords start new list elements, which sit side by side.
fn nesting_bound(tokens: &[Token]) -> Nesting {
    let mut levels: Vec<Level> = vec![Level::default()];
    let mut open = 0usize; // running sum of chain + sets over `levels`
    let mut found = Nesting::default();
    for token in tokens {
        let top = levels.len() - 1;
        match token {
            Token::LParen | Token::LBracket | Token::LBrace => {
                levels.push(Level::default());
            }
            Token::RParen | Token::RBracket | Token::RBrace => {
                if levels.len() > 1 {
                    if let Some(l) = levels.pop() {
                        open -= l.chain + l.sets;
                    }
                }
            }
            Token::Comma | Token::SemiColon => {
                open -= levels[top].chain;
                levels[top].chain = 0;
            }
            Token::Word(w) => match w.keyword {
                Keyword::UNION | Keyword::INTERSECT | Keyword::EXCEPT | Keyword::JOIN => {
                    levels[top].sets += 1;
                    open += 1;
                }
                Keyword::SELECT
                | Keyword::FROM
                | Keyword::WHERE
                | Keyword::GROUP
                | Keyword::HAVING
                | Keyword::ORDER
                | Keyword::LIMIT
                | Keyword::OFFSET
                | Keyword::ON
                | Keyword::WHEN
                | Keyword::THEN
                | Keyword::ELSE
                | Keyword::END
                | Keyword::WINDOW
                | Keyword::WITH => {
                    open -= levels[top].chain;
                    levels[top].chain = 0;
                }
                Keyword::AND
                | Keyword::OR
                | Keyword::NOT
                | Keyword::IS
                | Keyword::IN
                | Keyword::LIKE
                | Keyword::ILIKE
                | Keyword::BETWEEN
                | Keyword::AT
                | Keyword::COLLATE
                | Keyword::CASE
                | Keyword::XOR => {
                    levels[top].chain += 1;
                    open += 1;
                }
                _ => {}
            },
            Token::SingleQuotedString(s)
            | Token::DoubleQuotedString(s)
            | Token::EscapedStringLiteral(s)
            | Token::NationalStringLiteral(s)
            | Token::UnicodeStringLiteral(s) => {
                found.literal = found.literal.max(paren_depth(s));
            }
            Token::EOF
            | Token::Number(..)
            | Token::Char(_)
            | Token::Whitespace(_)
            | Token::Period
            | Token::Placeholder(_)
            | Token::Colon
            | Token::HexStringLiteral(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::DollarQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_) => {}
            // Every other token is an operator (+ - * / || :: < = -> @> …): it may nest its operands one deeper.
            _ => {
                levels[top].chain += 1;
                open += 1;
            }
        }
        found.depth = found.depth.max(levels.len() + open);
    }
    found
}

/// Deepest parenthesis nesting inside `s`.
fn paren_depth(s: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for c in s.chars() {
        match c {
            '(' | '<' | '[' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' | '>' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

fn read_only(what: &str) -> QueryError {
    QueryError::ReadOnly(format!(
        "{what}: ccmart serves a read-only mart; only queries (SELECT, WITH, VALUES, EXPLAIN of a query) are accepted"
    ))
}

/// The verb a statement starts with, for messages.
fn verb(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    match words.as_slice() {
        [a, b] if a.eq_ignore_ascii_case("create") || a.eq_ignore_ascii_case("drop") => {
            format!("{} {}", a.to_uppercase(), b.to_uppercase())
        }
        [a, ..] => a.to_uppercase(),
        [] => "the statement".into(),
    }
}

/// Check 2: `statement` (as a parser made it) is a read-only query, or `EXPLAIN` of one.
pub fn check_statement(statement: &Statement) -> Result<(), QueryError> {
    let mut current = statement;
    loop {
        match current {
            Statement::Query(q) => return check_query(q),
            Statement::Explain { statement, .. } => current = statement,
            // DataFusion plans these as queries of information_schema; the plan gate and visibility still apply.
            Statement::ShowVariable { .. } | Statement::ShowTables { .. } | Statement::ShowColumns { .. } => {
                return Ok(())
            }
            other => return Err(read_only(&format!("cannot execute {}", verb(other)))),
        }
    }
}

/// How many scans `query`'s CTEs stand for once each reference is expanded: a CTE that references another twice
/// doubles it, so a chain of them grows exponentially before any plan exists (DataFusion plans each reference).
/// Counted on the syntax tree, per `WITH` clause, from the table names each CTE body reads.
fn cte_fan_out(query: &ast::Query) -> u64 {
    struct Relations(Vec<String>);
    impl Visitor for Relations {
        type Break = ();
        fn pre_visit_relation(&mut self, relation: &ast::ObjectName) -> ControlFlow<()> {
            self.0.push(relation.to_string().to_lowercase());
            ControlFlow::Continue(())
        }
    }
    let Some(with) = &query.with else { return 1 };
    let mut size: HashMap<String, u64> = HashMap::new();
    for cte in &with.cte_tables {
        let mut refs = Relations(Vec::new());
        let _ = cte.query.visit(&mut refs);
        let own = refs.0.iter().fold(1u64, |acc, r| acc.saturating_add(size.get(r).copied().unwrap_or(1)));
        size.insert(cte.alias.name.value.to_lowercase(), own);
    }
    let mut refs = Relations(Vec::new());
    let _ = query.body.visit(&mut refs);
    refs.0.iter().fold(1u64, |acc, r| acc.saturating_add(size.get(r).copied().unwrap_or(1)))
}

/// `query` and every query inside it (CTEs, subqueries, set-operation branches) only read.
pub fn check_query(query: &ast::Query) -> Result<(), QueryError> {
    struct Bodies(Option<QueryError>);
    impl Visitor for Bodies {
        type Break = ();
        fn pre_visit_query(&mut self, query: &ast::Query) -> ControlFlow<()> {
            let fan_out = cte_fan_out(query);
            if fan_out > MAX_PLAN_NODES {
                self.0 = Some(too_complex(format!(
                    "the query's CTEs expand into about {fan_out} table scans (CTEs referencing CTEs multiply); at \
                     most {MAX_PLAN_NODES} are accepted"
                )));
                return ControlFlow::Break(());
            }
            match check_body(&query.body) {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => {
                    self.0 = Some(e);
                    ControlFlow::Break(())
                }
            }
        }
    }
    let mut v = Bodies(None);
    let _ = query.visit(&mut v);
    v.0.map_or(Ok(()), Err)
}

/// The set expression of one query level (walked without recursion; nested queries are visited on their own).
fn check_body(body: &SetExpr) -> Result<(), QueryError> {
    let mut stack = vec![body];
    while let Some(b) = stack.pop() {
        match b {
            SetExpr::Select(select) => {
                if select.into.is_some() {
                    return Err(read_only("SELECT ... INTO creates a table"));
                }
            }
            SetExpr::SetOperation { left, right, .. } => {
                stack.push(left);
                stack.push(right);
            }
            SetExpr::Query(_) | SetExpr::Values(_) | SetExpr::Table(_) => {}
            SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => {
                return Err(read_only(&format!("cannot execute {} inside a query", verb(s))));
            }
        }
    }
    Ok(())
}

/// Check 2 for a statement DataFusion's own parser made (HTTP): its extensions (`COPY`, `CREATE EXTERNAL TABLE`,
/// `RESET`) write files or change settings.
pub fn check_df_statement(statement: &datafusion::sql::parser::Statement) -> Result<(), QueryError> {
    use datafusion::sql::parser::Statement as Df;
    let mut current = statement;
    loop {
        match current {
            Df::Statement(s) => return check_statement(s),
            Df::Explain(e) => current = &e.statement,
            Df::CopyTo(_) => return Err(read_only("COPY writes files")),
            Df::CreateExternalTable(_) => return Err(read_only("cannot execute CREATE EXTERNAL TABLE")),
            Df::Reset(_) => return Err(read_only("RESET changes the query engine's settings")),
        }
    }
}

/// Check 3: the plan reads only (DataFusion's verifier, DDL, DML and statements denied) and is not too large.
pub fn check_plan(plan: &LogicalPlan) -> Result<(), QueryError> {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(plan)
        .map_err(|e| read_only(&e.strip_backtrace()))?;
    let nodes = expanded_size(plan);
    if nodes > MAX_PLAN_NODES {
        return Err(too_complex(format!(
            "the query plans into {nodes} operators once every CTE and view is expanded where it is used; at most \
             {MAX_PLAN_NODES} are accepted"
        )));
    }
    Ok(())
}

/// Nodes of `plan` with every shared subtree counted once per use (saturating), in time linear in the number of
/// distinct nodes. Inputs are walked without recursion; subqueries inside expressions recurse, but their nesting is
/// bounded by the SQL parser's own depth limit.
fn expanded_size(plan: &LogicalPlan) -> u64 {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::Expr;
    fn subqueries(p: &LogicalPlan) -> Vec<Arc<LogicalPlan>> {
        let mut found = Vec::new();
        let _ = p.apply_expressions(|e| {
            e.apply(|e| {
                match e {
                    Expr::ScalarSubquery(s) => found.push(s.subquery.clone()),
                    Expr::Exists(x) => found.push(x.subquery.subquery.clone()),
                    Expr::InSubquery(i) => found.push(i.subquery.subquery.clone()),
                    _ => {}
                }
                Ok(TreeNodeRecursion::Continue)
            })
        });
        found
    }
    let key = |p: &LogicalPlan| p as *const LogicalPlan as usize;
    let mut size: HashMap<usize, u64> = HashMap::new();
    let mut stack: Vec<(&LogicalPlan, bool)> = vec![(plan, false)];
    while let Some((p, expanded)) = stack.pop() {
        if size.contains_key(&key(p)) {
            continue;
        }
        let inputs = p.inputs();
        if expanded {
            let own = subqueries(p).iter().fold(1u64, |acc, s| acc.saturating_add(expanded_size(s)));
            let total = inputs.iter().fold(own, |acc, k| acc.saturating_add(size.get(&key(k)).copied().unwrap_or(0)));
            size.insert(key(p), total);
        } else {
            stack.push((p, true));
            stack.extend(inputs.into_iter().filter(|k| !size.contains_key(&key(k))).map(|k| (k, false)));
        }
        if size.len() as u64 > MAX_PLAN_NODES.saturating_mul(4) {
            return u64::MAX;
        }
    }
    size.get(&key(plan)).copied().unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(sql: &str) -> usize {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().unwrap();
        nesting_bound(&tokens).depth
    }

    #[test]
    fn chains_count_as_nesting_and_lists_do_not() {
        let chain = format!("SELECT {}", vec!["1"; 1500].join("+"));
        assert!(depth(&chain) > 1400, "{}", depth(&chain));
        let list = format!("SELECT x FROM t WHERE x IN ({})", vec!["1"; 5000].join(","));
        assert!(depth(&list) < 10, "{}", depth(&list));
        let union = vec!["SELECT 1"; 3000].join(" UNION ALL ");
        assert!(depth(&union) > 2900);
        let types = format!("SELECT CAST(NULL AS {}INT{})", "ARRAY<".repeat(2000), ">".repeat(2000));
        assert!(depth(&types) > 1900);
        let report = "SELECT a, sum(b * 2 + c) AS s FROM t JOIN u ON t.k = u.k WHERE a > 1 AND b < 2 OR c = 3 \
                      GROUP BY a ORDER BY 2 DESC LIMIT 10";
        assert!(depth(report) < 20, "{}", depth(report));
    }

    #[test]
    fn text_gate_refuses_deep_and_huge_statements() {
        assert!(matches!(check_text(&format!("SELECT {}", vec!["1"; 1500].join("+"))), Err(QueryError::TooComplex(_))));
        assert!(check_text(&format!("SELECT {}", vec!["1"; 500].join("+"))).is_ok());
        let huge = format!("SELECT '{}'", "x".repeat(MAX_STATEMENT_BYTES));
        assert!(matches!(check_text(&huge), Err(QueryError::TooComplex(_))));
        let typed = format!("SELECT arrow_cast(1, '{}Int64{}')", "List(".repeat(100), ")".repeat(100));
        assert!(matches!(check_text(&typed), Err(QueryError::TooComplex(_))));
    }

    fn parse(sql: &str) -> Statement {
        datafusion::sql::sqlparser::parser::Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0)
    }

    #[test]
    fn only_queries_pass_and_explain_is_looked_inside() {
        assert!(check_statement(&parse("SELECT 1")).is_ok());
        assert!(check_statement(&parse("EXPLAIN ANALYZE SELECT 1")).is_ok());
        assert!(check_statement(&parse("WITH a AS (SELECT 1) SELECT * FROM a")).is_ok());
        for bad in [
            "EXPLAIN ANALYZE COPY (SELECT 1) TO '/tmp/x'",
            "EXPLAIN INSERT INTO t VALUES (1)",
            "SELECT * INTO t FROM u",
            "SELECT 1 UNION ALL (SELECT * INTO t FROM u)",
            "SELECT * FROM (SELECT 1) s WHERE EXISTS (SELECT * INTO t FROM u)",
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
            "CREATE TABLE t (a INT)",
            "DROP TABLE t",
        ] {
            assert!(matches!(check_statement(&parse(bad)), Err(QueryError::ReadOnly(_))), "{bad}");
        }
    }

    /// Parses, checks and plans `sql` on a SQL thread, the way `/v1/query` does; `Ok(false)` when the gate refused.
    fn plan_on_sql_thread(sql: String) -> Result<bool, String> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let job = crate::query::workers::spawn(async move {
                if check_text(&sql).is_err() {
                    return Ok(false);
                }
                let ctx = datafusion::prelude::SessionContext::new();
                let state = ctx.state();
                let Ok(statement) = state.sql_to_statement(&sql, &datafusion::config::Dialect::PostgreSQL) else {
                    return Ok(true);
                };
                if check_df_statement(&statement).is_err() {
                    return Ok(false);
                }
                if let Ok(plan) = state.statement_to_plan(statement).await {
                    if check_plan(&plan).is_ok() {
                        // An optimizer error (e.g. an overflow while folding constants) is an answer, not a crash.
                        let _ = state.optimize(&plan);
                    }
                }
                Ok(true)
            })
            .unwrap();
            job.join().await.ok_or_else(|| "the SQL thread stopped".to_string())?
        })
    }

    /// The deepest statements the gate admits are planned and optimised on a SQL thread without exhausting its
    /// stack (an overflow would abort this test binary).
    #[test]
    fn the_deepest_admitted_statements_plan_on_a_sql_thread() {
        let n = MAX_NESTING - 5;
        for sql in [
            format!("SELECT {}", vec!["1"; n].join("+")),
            format!("SELECT 1 WHERE {}", vec!["1 = 1"; n / 2].join(" AND ")),
            format!("SELECT {}", vec!["'a'"; n].join(" || ")),
            vec!["SELECT 1 AS a"; n].join(" UNION ALL "),
        ] {
            assert!(check_text(&sql).is_ok(), "admitted: {}", &sql[..60]);
            assert_eq!(plan_on_sql_thread(sql), Ok(true));
        }
    }

    use proptest::prelude::*;

    fn fragment() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "1",
            "+",
            " * ",
            " AND ",
            " OR ",
            "(",
            ")",
            ",",
            " || ",
            "::int",
            "::text",
            "'a'",
            " UNION ALL SELECT ",
            " NOT ",
            "-",
            "x",
            " IN (1,2)",
            " CASE WHEN 1=1 THEN ",
            " END",
            "[1]",
            "ARRAY<",
            ">",
            "<",
            " = ",
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever the statement, the text gate answers (never panics), and whatever it admits is parsed, checked
        /// and planned on a SQL thread without crashing the process.
        #[test]
        fn whatever_the_gate_admits_plans_without_crashing(parts in prop::collection::vec(fragment(), 1..4000)) {
            let sql = format!("SELECT {}", parts.concat());
            let _ = check_text(&sql);
            prop_assert!(plan_on_sql_thread(sql).is_ok());
        }
    }
}
