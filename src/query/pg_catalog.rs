//! ccmart's `pg_catalog` schema: the PostgreSQL catalog of `datafusion-postgres` with what client tools need beside
//! it — stable object ids, the star schema's keys, and PostgreSQL's column types where the crate has text.
//!
//! - **Stable oids.** The crate numbers relations in the order it first meets them, and it iterates hash maps; a
//!   context is built per mart version, so `interaction_fact` had a different oid after every publish, and psql
//!   `\d+` or SQLAlchemy, which read an oid in one statement and use it in the next, described another table. Here
//!   names are listed sorted and the relations are numbered when the context is built, so the same tables get the
//!   same oids in every mart version and after a restart.
//! - **Keys.** Every mart table's primary key (its columns `NOT NULL` in `pg_attribute`) and the joins of [`FOREIGN_KEYS`] are declared in `pg_constraint`,
//!   with a primary-key index (`<table>_pkey`) in `pg_class` / `pg_index`, as PostgreSQL holds them, so pgjdbc's
//!   `getPrimaryKeys` / `getImportedKeys`, SQLAlchemy's reflection and psql `\d` show the star schema. The joins are
//!   `NOT VALID` (declared, not enforced).
//! - **Types.** `pg_index.indkey` & co. and `pg_constraint.conkey` & co. are arrays (the crate has their text), so
//!   `unnest(indkey)` and `conkey[n]` work; `pg_class` has `relacl` and `reloptions`; `pg_settings` lists the
//!   read-only presets drivers look up (`max_index_keys`, …) beside the session defaults.

use super::QueryError;
use crate::transform::schema::{MartTable, FOREIGN_KEYS, MART_TABLES};
use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int16Array, Int16Builder, Int32Array, Int32Builder, ListBuilder,
    RecordBatch, StringArray, UInt32Array,
};
use datafusion::arrow::compute::{concat_batches, take};
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use datafusion::catalog::{CatalogProviderList, MemTable, SchemaProvider, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::{
    catalog_info::CatalogInfo, context::EmptyContextProvider, PgCatalogSchemaProvider,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The schema the mart's tables live in.
const MART_SCHEMA: &str = "public";
/// PostgreSQL's oid of the btree access method (`pg_am`).
const BTREE_AM: i32 = 403;
/// PostgreSQL's btree operator classes for the key columns' types (`pg_opclass`: `int8_ops`, `text_ops`).
const INT8_OPS: i32 = 1980;
const TEXT_OPS: i32 = 3126;
/// PostgreSQL's default collation oid, which a text key column's index uses.
const DEFAULT_COLLATION: i32 = 100;

/// A catalog list that lists every name sorted, so the crate numbers relations in the same order every time.
#[derive(Debug, Clone)]
struct SortedNames(Arc<dyn CatalogProviderList>);

#[async_trait]
impl CatalogInfo for SortedNames {
    async fn catalog_names(&self) -> Result<Vec<String>> {
        let mut names = CatalogProviderList::catalog_names(self.0.as_ref());
        names.sort();
        Ok(names)
    }

    async fn schema_names(&self, catalog_name: &str) -> Result<Option<Vec<String>>> {
        Ok(self.0.schema_names(catalog_name).await?.map(|mut names| {
            names.sort();
            names
        }))
    }

    async fn table_names(&self, catalog_name: &str, schema_name: &str) -> Result<Option<Vec<String>>> {
        Ok(self.0.table_names(catalog_name, schema_name).await?.map(|mut names| {
            names.sort();
            names
        }))
    }

    async fn table_schema(&self, catalog_name: &str, schema_name: &str, table_name: &str) -> Result<Option<SchemaRef>> {
        self.0.table_schema(catalog_name, schema_name, table_name).await
    }

    async fn table_type(&self, catalog_name: &str, schema_name: &str, table_name: &str) -> Result<Option<TableType>> {
        self.0.table_type(catalog_name, schema_name, table_name).await
    }
}

/// The `pg_catalog` schema: the crate's tables, with the ones this module builds in their place.
#[derive(Debug)]
struct MartPgCatalog {
    inner: Arc<dyn SchemaProvider>,
    replaced: HashMap<&'static str, Arc<dyn TableProvider>>,
}

#[async_trait]
impl SchemaProvider for MartPgCatalog {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        match self.replaced.get(name.to_ascii_lowercase().as_str()) {
            Some(t) => Ok(Some(t.clone())),
            None => self.inner.table(name).await,
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// One declared primary key with its index, and the oids both have.
struct PrimaryKey {
    table: &'static MartTable,
    table_oid: i32,
    index_oid: i32,
    constraint_oid: i32,
}

impl PrimaryKey {
    fn index_name(&self) -> String {
        format!("{}_pkey", self.table.name)
    }

    fn column_type(&self) -> crate::transform::schema::ColumnKind {
        self.table.columns[0].1
    }
}

/// What the key functions answer: the definition of each declared constraint and index, by oid.
#[derive(Debug, Default, PartialEq, Eq)]
struct Definitions {
    constraints: BTreeMap<i32, String>,
    indexes: BTreeMap<i32, (String, Vec<String>)>,
    visible: std::collections::BTreeSet<i32>,
    views: BTreeMap<i32, String>,
}

/// Registers ccmart's `pg_catalog` schema (and the key functions that read it) in `ctx`, whose `ccmart` catalog
/// holds the mart's tables. The crate's provider reads a view of the catalogs *without* `pg_catalog` itself: the
/// stock provider holds the context's catalog list, which holds the provider — a reference cycle that kept every
/// mart version's context (tables, the staging store) alive forever.
pub(super) async fn install(
    ctx: &SessionContext,
    static_tables: Arc<datafusion_postgres::datafusion_pg_catalog::pg_catalog::PgCatalogStaticTables>,
    settings: &BTreeMap<String, String>,
) -> Result<(), QueryError> {
    use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, MemoryCatalogProviderList};
    let err = |e: DataFusionError| QueryError::Mart(format!("PostgreSQL catalog: {e}"));
    let catalog = ctx.catalog("ccmart").ok_or_else(|| QueryError::Mart("catalog ccmart is missing".into()))?;
    let mart_view = Arc::new(MemoryCatalogProvider::new());
    for name in catalog.schema_names().into_iter().filter(|n| n != "pg_catalog") {
        if let Some(schema) = catalog.schema(&name) {
            mart_view.register_schema(&name, schema).map_err(err)?;
        }
    }
    // PostgreSQL's own schema is still listed in pg_namespace (the crate gives it oid 11, which the pg_type and
    // pg_proc rows name, so type and function lookups join to it), as an empty schema in this view.
    mart_view.register_schema("pg_catalog", Arc::new(datafusion::catalog::MemorySchemaProvider::new())).map_err(err)?;
    let view = Arc::new(MemoryCatalogProviderList::new());
    view.register_catalog("ccmart".into(), mart_view);
    let view: Arc<dyn CatalogProviderList> = view;
    let inner: Arc<dyn SchemaProvider> = Arc::new(
        PgCatalogSchemaProvider::try_new(SortedNames(view), static_tables, EmptyContextProvider).map_err(err)?,
    );
    // The first scan numbers every relation (in sorted order); later scans keep those numbers.
    let pg_class = scan(ctx, &inner, "pg_class").await.map_err(err)?;
    let relations = relations(&pg_class).map_err(err)?;
    let keys = primary_keys(&relations);
    let mut replaced: HashMap<&'static str, Arc<dyn TableProvider>> = HashMap::new();
    replaced.insert("pg_class", mem_table(with_indexes(&pg_class, &keys).map_err(err)?).map_err(err)?);
    let pg_attribute = scan(ctx, &inner, "pg_attribute").await.map_err(err)?;
    replaced.insert("pg_attribute", mem_table(keys_not_null(&pg_attribute, &keys).map_err(err)?).map_err(err)?);
    replaced.insert("pg_index", mem_table(pg_index(&keys).map_err(err)?).map_err(err)?);
    replaced.insert("pg_constraint", mem_table(pg_constraint(&relations, &keys).map_err(err)?).map_err(err)?);
    replaced.insert("pg_settings", mem_table(pg_settings(settings).map_err(err)?).map_err(err)?);
    let mut definitions = definitions(&keys);
    definitions.visible = visible_relations(&relations);
    definitions.views = view_definitions(&relations);
    let definitions = Arc::new(definitions);
    catalog.register_schema("pg_catalog", Arc::new(MartPgCatalog { inner, replaced })).map_err(err)?;
    ctx.register_udf(ScalarUDF::new_from_impl(DefinitionText::new(DefinitionKind::Constraint, definitions.clone())));
    ctx.register_udf(ScalarUDF::new_from_impl(IndexDef::new(definitions.clone())));
    ctx.register_udf(ScalarUDF::new_from_impl(TableVisible::new(definitions.clone())));
    ctx.register_udf(ScalarUDF::new_from_impl(DefinitionText::new(DefinitionKind::View, definitions)));
    Ok(())
}

/// One relation of the crate's `pg_class`, as the functions below need it.
struct Relation {
    oid: i32,
    name: String,
    kind: String,
    namespace: i32,
}

fn relations(pg_class: &RecordBatch) -> Result<Vec<Relation>> {
    let oids = column(pg_class, "oid")?.as_primitive::<Int32Type>();
    let names = datafusion::arrow::compute::cast(column(pg_class, "relname")?, &DataType::Utf8)?;
    let kinds = datafusion::arrow::compute::cast(column(pg_class, "relkind")?, &DataType::Utf8)?;
    let (names, kinds) = (names.as_string::<i32>(), kinds.as_string::<i32>());
    let namespaces = column(pg_class, "relnamespace")?.as_primitive::<Int32Type>();
    Ok((0..pg_class.num_rows())
        .map(|i| Relation {
            oid: oids.value(i),
            name: names.value(i).to_string(),
            kind: kinds.value(i).to_string(),
            namespace: namespaces.value(i),
        })
        .collect())
}

/// The relations on the search path (`public`; PostgreSQL's `pg_catalog` objects are not listed in `pg_class`
/// here): a `bi` view of the same name as a table is not, as in PostgreSQL, so psql `\d name` and SQLAlchemy's
/// lookups by name find the table.
fn visible_relations(relations: &[Relation]) -> std::collections::BTreeSet<i32> {
    // The namespace of the mart's tables is the search path's.
    let public = relations.iter().find(|r| r.kind == "r").map(|r| r.namespace);
    relations.iter().filter(|r| Some(r.namespace) == public).map(|r| r.oid).collect()
}

/// `pg_get_viewdef` of the `bi` views: their defining query.
fn view_definitions(relations: &[Relation]) -> BTreeMap<i32, String> {
    relations
        .iter()
        .filter(|r| r.kind == "v")
        .filter_map(|r| {
            let t = crate::transform::schema::mart_table(&r.name)?;
            Some((r.oid, format!(" {};", super::bi_view_sql(t))))
        })
        .collect()
}

async fn scan(ctx: &SessionContext, schema: &Arc<dyn SchemaProvider>, name: &str) -> Result<RecordBatch> {
    let table = schema.table(name).await?.ok_or_else(|| DataFusionError::Plan(format!("no {name}")))?;
    let plan = table.scan(&ctx.state(), None, &[], None).await?;
    let batches = datafusion::physical_plan::collect(plan, ctx.task_ctx()).await?;
    Ok(concat_batches(&table.schema(), &batches)?)
}

fn mem_table(batch: RecordBatch) -> Result<Arc<dyn TableProvider>> {
    Ok(Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]])?))
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    let i = batch.schema().index_of(name)?;
    Ok(batch.column(i))
}

/// The mart tables' oids (from the crate's `pg_class`), and new oids for their keys' indexes and constraints,
/// numbered after every relation in table-name order, so they are as stable as the tables'.
fn primary_keys(relations: &[Relation]) -> Vec<PrimaryKey> {
    // The mart's tables (relkind 'r'), not the `bi` views of the same names.
    let by_name: HashMap<&str, i32> =
        relations.iter().filter(|r| r.kind == "r").map(|r| (r.name.as_str(), r.oid)).collect();
    let mut next = relations.iter().map(|r| r.oid).max().unwrap_or(16383) + 1;
    let mut tables: Vec<&'static MartTable> = MART_TABLES.iter().filter(|t| by_name.contains_key(t.name)).collect();
    tables.sort_by_key(|t| t.name);
    let mut keys = Vec::new();
    for table in tables {
        keys.push(PrimaryKey { table, table_oid: by_name[table.name], index_oid: next, constraint_oid: next + 1 });
        next += 2;
    }
    keys
}

/// The crate's `pg_class` with `relacl` and `reloptions` (NULL, as for any table without grants or storage
/// options), `relhasindex` set where a key is declared, and one row per key index (`relkind = 'i'`).
fn with_indexes(pg_class: &RecordBatch, keys: &[PrimaryKey]) -> Result<RecordBatch> {
    let oids = column(pg_class, "oid")?.as_primitive::<Int32Type>();
    let row_of: HashMap<i32, u32> = (0..pg_class.num_rows()).map(|i| (oids.value(i), i as u32)).collect();
    let keyed: std::collections::HashSet<i32> = keys.iter().map(|k| k.table_oid).collect();
    let has_index: BooleanArray = oids.iter().map(|o| Some(o.is_some_and(|o| keyed.contains(&o)))).collect();
    let tables = replace(pg_class, "relhasindex", Arc::new(has_index))?;
    // Index rows start as copies of their table's row (namespace, owner, persistence), then differ where an
    // index does.
    let rows: UInt32Array = keys.iter().map(|k| row_of.get(&k.table_oid).copied()).collect();
    let mut indexes = RecordBatch::try_new(
        pg_class.schema(),
        pg_class.columns().iter().map(|c| take(c, &rows, None)).collect::<std::result::Result<Vec<_>, _>>()?,
    )?;
    let n = keys.len();
    indexes = replace(&indexes, "oid", Arc::new(Int32Array::from_iter_values(keys.iter().map(|k| k.index_oid))))?;
    indexes =
        replace(&indexes, "relfilenode", Arc::new(Int32Array::from_iter_values(keys.iter().map(|k| k.index_oid))))?;
    indexes =
        replace(&indexes, "relname", Arc::new(StringArray::from_iter_values(keys.iter().map(|k| k.index_name()))))?;
    indexes = replace(&indexes, "relkind", Arc::new(StringArray::from_iter_values(std::iter::repeat_n("i", n))))?;
    indexes = replace(&indexes, "relam", Arc::new(Int32Array::from(vec![BTREE_AM; n])))?;
    indexes = replace(&indexes, "reltype", Arc::new(Int32Array::from(vec![0; n])))?;
    indexes = replace(&indexes, "relnatts", Arc::new(Int16Array::from(vec![1_i16; n])))?;
    indexes = replace(&indexes, "relhasindex", Arc::new(BooleanArray::from(vec![false; n])))?;
    let all = concat_batches(&pg_class.schema(), &[tables, indexes])?;
    let mut fields: Vec<Field> = all.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut columns = all.columns().to_vec();
    for name in ["relacl", "reloptions"] {
        fields.push(Field::new(name, text_list_type(), true));
        columns.push(datafusion::arrow::array::new_null_array(&text_list_type(), all.num_rows()));
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

/// The crate's `pg_attribute` with each primary-key column `NOT NULL`, as PostgreSQL marks a key's columns (every
/// mart key is computed for every row, never NULL).
fn keys_not_null(pg_attribute: &RecordBatch, keys: &[PrimaryKey]) -> Result<RecordBatch> {
    let keyed: std::collections::HashSet<i32> = keys.iter().map(|k| k.table_oid).collect();
    let relids = column(pg_attribute, "attrelid")?.as_primitive::<Int32Type>();
    let attnums = datafusion::arrow::compute::cast(column(pg_attribute, "attnum")?, &DataType::Int16)?;
    let attnums = attnums.as_primitive::<datafusion::arrow::datatypes::Int16Type>();
    let not_null = column(pg_attribute, "attnotnull")?.as_boolean();
    let updated: BooleanArray = (0..pg_attribute.num_rows())
        .map(|i| {
            let key = relids.is_valid(i) && keyed.contains(&relids.value(i)) && attnums.value(i) == 1;
            Some(key || (not_null.is_valid(i) && not_null.value(i)))
        })
        .collect();
    replace(pg_attribute, "attnotnull", Arc::new(updated))
}

fn text_list_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
}

fn replace(batch: &RecordBatch, name: &str, values: ArrayRef) -> Result<RecordBatch> {
    let i = batch.schema().index_of(name)?;
    let target = batch.schema().field(i).data_type().clone();
    let values =
        if values.data_type() == &target { values } else { datafusion::arrow::compute::cast(&values, &target)? };
    let mut columns = batch.columns().to_vec();
    columns[i] = values;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// An oid column as the crate declares them (Int32 tagged as an oid, so comparisons with names resolve).
fn oid_field(name: &str) -> Field {
    datafusion_postgres::datafusion_pg_catalog::pg_catalog::oid_field::oid_field(
        name,
        datafusion_postgres::datafusion_pg_catalog::pg_catalog::oid_field::kind::OID,
        false,
    )
}

fn int16_list(values: impl IntoIterator<Item = Option<Vec<i16>>>) -> ArrayRef {
    let mut b = ListBuilder::new(Int16Builder::new());
    for v in values {
        match v {
            Some(v) => {
                b.values().append_slice(&v);
                b.append(true);
            }
            None => b.append(false),
        }
    }
    Arc::new(b.finish())
}

fn int32_list(values: impl IntoIterator<Item = Option<Vec<i32>>>) -> ArrayRef {
    let mut b = ListBuilder::new(Int32Builder::new());
    for v in values {
        match v {
            Some(v) => {
                b.values().append_slice(&v);
                b.append(true);
            }
            None => b.append(false),
        }
    }
    Arc::new(b.finish())
}

fn list_field(name: &str, element: DataType) -> Field {
    Field::new(name, DataType::List(Arc::new(Field::new_list_field(element, true))), true)
}

fn bools(n: usize, v: bool) -> ArrayRef {
    Arc::new(BooleanArray::from(vec![v; n]))
}

/// `pg_index`: one unique, primary btree index per declared key, on the table's first column.
fn pg_index(keys: &[PrimaryKey]) -> Result<RecordBatch> {
    let n = keys.len();
    let mut fields = vec![oid_field("indexrelid"), oid_field("indrelid")];
    fields.push(Field::new("indnatts", DataType::Int16, false));
    fields.push(Field::new("indnkeyatts", DataType::Int16, false));
    let flags = [
        ("indisunique", true),
        ("indnullsnotdistinct", false),
        ("indisprimary", true),
        ("indisexclusion", false),
        ("indimmediate", true),
        ("indisclustered", false),
        ("indisvalid", true),
        ("indcheckxmin", false),
        ("indisready", true),
        ("indislive", true),
        ("indisreplident", false),
    ];
    fields.extend(flags.iter().map(|(name, _)| Field::new(*name, DataType::Boolean, false)));
    fields.push(list_field("indkey", DataType::Int16));
    fields.push(list_field("indcollation", DataType::Int32));
    fields.push(list_field("indclass", DataType::Int32));
    fields.push(list_field("indoption", DataType::Int16));
    fields.push(Field::new("indexprs", DataType::Utf8, true));
    fields.push(Field::new("indpred", DataType::Utf8, true));
    let text_key = |k: &PrimaryKey| k.column_type() == crate::transform::schema::ColumnKind::Text;
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from_iter_values(keys.iter().map(|k| k.index_oid))),
        Arc::new(Int32Array::from_iter_values(keys.iter().map(|k| k.table_oid))),
        Arc::new(Int16Array::from(vec![1_i16; n])),
        Arc::new(Int16Array::from(vec![1_i16; n])),
    ];
    columns.extend(flags.iter().map(|(_, v)| bools(n, *v)));
    columns.push(int16_list(keys.iter().map(|_| Some(vec![1]))));
    columns.push(int32_list(keys.iter().map(|k| Some(vec![if text_key(k) { DEFAULT_COLLATION } else { 0 }]))));
    columns.push(int32_list(keys.iter().map(|k| Some(vec![if text_key(k) { TEXT_OPS } else { INT8_OPS }]))));
    columns.push(int16_list(keys.iter().map(|_| Some(vec![0]))));
    columns.push(Arc::new(StringArray::from(vec![None::<&str>; n])));
    columns.push(Arc::new(StringArray::from(vec![None::<&str>; n])));
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

/// One row of `pg_constraint`.
struct ConstraintRow {
    oid: i32,
    name: String,
    kind: &'static str,
    table_oid: i32,
    index_oid: i32,
    referenced_oid: i32,
    key: i16,
    referenced_key: Option<i16>,
}

fn constraint_rows(keys: &[PrimaryKey], next_oid: i32) -> Vec<ConstraintRow> {
    let by_name: HashMap<&str, &PrimaryKey> = keys.iter().map(|k| (k.table.name, k)).collect();
    let mut rows: Vec<ConstraintRow> = keys
        .iter()
        .map(|k| ConstraintRow {
            oid: k.constraint_oid,
            name: k.index_name(),
            kind: "p",
            table_oid: k.table_oid,
            index_oid: k.index_oid,
            referenced_oid: 0,
            key: 1,
            referenced_key: None,
        })
        .collect();
    let mut oid = next_oid;
    for fk in FOREIGN_KEYS {
        let (Some(from), Some(to)) = (by_name.get(fk.table), by_name.get(fk.references)) else { continue };
        rows.push(ConstraintRow {
            oid,
            name: format!("{}_{}_fkey", fk.table, fk.column),
            kind: "f",
            table_oid: from.table_oid,
            index_oid: to.index_oid,
            referenced_oid: to.table_oid,
            key: from.table.index(fk.column) as i16 + 1,
            referenced_key: Some(1),
        });
        oid += 1;
    }
    rows
}

/// The oid after every key's index and constraint.
fn first_free_oid(keys: &[PrimaryKey]) -> i32 {
    keys.iter().map(|k| k.constraint_oid + 1).max().unwrap_or(16384)
}

/// `pg_constraint`: each table's primary key and the star schema's joins (as PostgreSQL stores a `NOT VALID`
/// foreign key: `convalidated` false, no action on update or delete, simple match).
fn pg_constraint(relations: &[Relation], keys: &[PrimaryKey]) -> Result<RecordBatch> {
    let rows = constraint_rows(keys, first_free_oid(keys));
    let n = rows.len();
    let namespace_of: HashMap<i32, i32> = relations.iter().map(|r| (r.oid, r.namespace)).collect();
    let text = |f: &dyn Fn(&ConstraintRow) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let oids_of =
        |f: &dyn Fn(&ConstraintRow) -> i32| -> ArrayRef { Arc::new(Int32Array::from_iter_values(rows.iter().map(f))) };
    let foreign = |r: &ConstraintRow, yes: &str, no: &str| Some(if r.kind == "f" { yes } else { no }.to_string());
    let fields = vec![
        oid_field("oid"),
        Field::new("conname", DataType::Utf8, false),
        oid_field("connamespace"),
        Field::new("contype", DataType::Utf8, false),
        Field::new("condeferrable", DataType::Boolean, false),
        Field::new("condeferred", DataType::Boolean, false),
        Field::new("convalidated", DataType::Boolean, false),
        oid_field("conrelid"),
        oid_field("contypid"),
        oid_field("conindid"),
        oid_field("conparentid"),
        oid_field("confrelid"),
        Field::new("confupdtype", DataType::Utf8, false),
        Field::new("confdeltype", DataType::Utf8, false),
        Field::new("confmatchtype", DataType::Utf8, false),
        Field::new("conislocal", DataType::Boolean, false),
        Field::new("coninhcount", DataType::Int16, false),
        Field::new("connoinherit", DataType::Boolean, false),
        list_field("conkey", DataType::Int16),
        list_field("confkey", DataType::Int16),
        list_field("conpfeqop", DataType::Int32),
        list_field("conppeqop", DataType::Int32),
        list_field("conffeqop", DataType::Int32),
        list_field("confdelsetcols", DataType::Int16),
        list_field("conexclop", DataType::Int32),
        Field::new("conbin", DataType::Utf8, true),
    ];
    let columns: Vec<ArrayRef> = vec![
        oids_of(&|r| r.oid),
        text(&|r| Some(r.name.clone())),
        oids_of(&|r| namespace_of.get(&r.table_oid).copied().unwrap_or(0)),
        text(&|r| Some(r.kind.to_string())),
        bools(n, false),
        bools(n, false),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.kind != "f")))),
        oids_of(&|r| r.table_oid),
        oids_of(&|_| 0),
        oids_of(&|r| r.index_oid),
        oids_of(&|_| 0),
        oids_of(&|r| r.referenced_oid),
        text(&|r| foreign(r, "a", " ")),
        text(&|r| foreign(r, "a", " ")),
        text(&|r| foreign(r, "s", " ")),
        bools(n, true),
        Arc::new(Int16Array::from(vec![0_i16; n])),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.kind != "f")))),
        int16_list(rows.iter().map(|r| Some(vec![r.key]))),
        int16_list(rows.iter().map(|r| r.referenced_key.map(|k| vec![k]))),
        int32_list(rows.iter().map(|_| None)),
        int32_list(rows.iter().map(|_| None)),
        int32_list(rows.iter().map(|_| None)),
        int16_list(rows.iter().map(|_| None)),
        int32_list(rows.iter().map(|_| None)),
        Arc::new(StringArray::from(vec![None::<&str>; n])),
    ];
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

fn definitions(keys: &[PrimaryKey]) -> Definitions {
    let by_oid: HashMap<i32, &PrimaryKey> = keys.iter().map(|k| (k.table_oid, k)).collect();
    let mut d = Definitions::default();
    for r in constraint_rows(keys, first_free_oid(keys)) {
        let Some(table) = by_oid.get(&r.table_oid) else { continue };
        let column = table.table.columns[(r.key - 1) as usize].0;
        let def = match by_oid.get(&r.referenced_oid) {
            Some(target) if r.kind == "f" => {
                format!(
                    "FOREIGN KEY ({column}) REFERENCES {}({}) NOT VALID",
                    target.table.name,
                    target.table.primary_key()
                )
            }
            _ => format!("PRIMARY KEY ({column})"),
        };
        d.constraints.insert(r.oid, def);
    }
    for k in keys {
        let def = format!(
            "CREATE UNIQUE INDEX {} ON {MART_SCHEMA}.{} USING btree ({})",
            k.index_name(),
            k.table.name,
            k.table.primary_key()
        );
        d.indexes.insert(k.index_oid, (def, vec![k.table.primary_key().to_string()]));
    }
    d
}

/// `pg_settings`: the session defaults (`current_setting` without a `SET`) and the read-only presets PostgreSQL
/// reports, which drivers read from here (pgjdbc `getImportedKeys` needs `max_index_keys`).
fn pg_settings(settings: &BTreeMap<String, String>) -> Result<RecordBatch> {
    // PostgreSQL's spelling of the names that are not all lower case.
    let spelling = |k: &str| match k {
        "datestyle" => "DateStyle".to_string(),
        "intervalstyle" => "IntervalStyle".to_string(),
        "timezone" => "TimeZone".to_string(),
        other => other.to_string(),
    };
    let mut all: BTreeMap<String, (String, &'static str)> =
        settings.iter().map(|(k, v)| (spelling(k), (v.clone(), "user"))).collect();
    all.insert("TimeZone".into(), (super::postgres::DEFAULT_TIME_ZONE.to_string(), "user"));
    for (name, value) in [
        ("max_index_keys", "32"),
        ("max_function_args", "100"),
        ("max_identifier_length", "63"),
        ("block_size", "8192"),
        ("integer_datetimes", "on"),
        ("server_version", super::postgres::SERVER_VERSION),
        ("server_version_num", super::postgres::SERVER_VERSION_NUM),
        ("server_encoding", "UTF8"),
        ("data_checksums", "off"),
    ] {
        all.insert(name.to_string(), (value.to_string(), "internal"));
    }
    let names: Vec<&str> = all.keys().map(String::as_str).collect();
    let values: Vec<&str> = all.values().map(|(v, _)| v.as_str()).collect();
    let contexts: Vec<&str> = all.values().map(|(_, c)| *c).collect();
    let n = names.len();
    let none = || -> ArrayRef { Arc::new(StringArray::from(vec![None::<&str>; n])) };
    let fields: Vec<Field> = [
        "name",
        "setting",
        "unit",
        "category",
        "short_desc",
        "extra_desc",
        "context",
        "vartype",
        "source",
        "min_val",
        "max_val",
        "enumvals",
        "boot_val",
        "reset_val",
        "sourcefile",
    ]
    .iter()
    .map(|n| Field::new(*n, DataType::Utf8, true))
    .chain([Field::new("sourceline", DataType::Int32, true), Field::new("pending_restart", DataType::Boolean, false)])
    .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(names)),
        Arc::new(StringArray::from(values.clone())),
        none(),
        none(),
        none(),
        none(),
        Arc::new(StringArray::from(contexts)),
        Arc::new(StringArray::from(vec!["string"; n])),
        Arc::new(StringArray::from(vec!["default"; n])),
        none(),
        none(),
        none(),
        Arc::new(StringArray::from(values.clone())),
        Arc::new(StringArray::from(values)),
        none(),
        Arc::new(Int32Array::from(vec![None; n])),
        bools(n, false),
    ];
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

fn oid_arg(args: &ScalarFunctionArgs, i: usize) -> Result<Int32Array> {
    let a = args.args.get(i).ok_or_else(|| DataFusionError::Plan(format!("missing argument {}", i + 1)))?;
    let a = datafusion::arrow::compute::cast(&a.to_array(args.number_rows)?, &DataType::Int32)?;
    Ok(a.as_primitive::<Int32Type>().clone())
}

impl Definitions {
    /// Whether `oid` is a relation of ccmart's `pg_class` (a table, key index or view).
    fn listed(&self, oid: i32) -> bool {
        self.visible.contains(&oid) || self.views.contains_key(&oid)
    }
}

impl std::hash::Hash for Definitions {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.constraints.len().hash(state);
        self.indexes.len().hash(state);
    }
}

/// `pg_table_is_visible(oid)`: whether the relation is on the search path (`public`), as PostgreSQL answers. An
/// oid ccmart's `pg_class` does not list (PostgreSQL's own catalog relations) is visible, as `pg_catalog` is.
#[derive(Debug, PartialEq, Eq, Hash)]
struct TableVisible {
    definitions: Arc<Definitions>,
    signature: Signature,
}

impl TableVisible {
    fn new(definitions: Arc<Definitions>) -> Self {
        TableVisible { definitions, signature: Signature::any(1, Volatility::Stable) }
    }
}

impl ScalarUDFImpl for TableVisible {
    fn name(&self) -> &str {
        "pg_table_is_visible"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let oids = oid_arg(&args, 0)?;
        // Every oid of a relation in pg_class is in `visible` or outside the search path; other oids (PostgreSQL's
        // own catalog relations, which ccmart's pg_class does not list) are visible, as pg_catalog is.
        let out: BooleanArray = oids
            .iter()
            .map(|o| o.map(|o| self.definitions.visible.contains(&o) || !self.definitions.listed(o)))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// The text PostgreSQL prints for one catalog object, looked up by oid; NULL for any other oid.
/// - `pg_get_constraintdef(oid [, pretty])`: a declared key (`PRIMARY KEY (x)`,
///   `FOREIGN KEY (x) REFERENCES t(y) NOT VALID`);
/// - `pg_get_viewdef(oid [, pretty])`: a `bi` view's defining query.
#[derive(Debug, PartialEq, Eq, Hash)]
struct DefinitionText {
    kind: DefinitionKind,
    definitions: Arc<Definitions>,
    signature: Signature,
}

/// Which definitions a [`DefinitionText`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum DefinitionKind {
    Constraint,
    View,
}

impl DefinitionText {
    fn new(kind: DefinitionKind, definitions: Arc<Definitions>) -> Self {
        let signature = Signature::one_of(vec![TypeSignature::Any(1), TypeSignature::Any(2)], Volatility::Stable);
        DefinitionText { kind, definitions, signature }
    }
}

impl ScalarUDFImpl for DefinitionText {
    fn name(&self) -> &str {
        match self.kind {
            DefinitionKind::Constraint => "pg_get_constraintdef",
            DefinitionKind::View => "pg_get_viewdef",
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let texts = match self.kind {
            DefinitionKind::Constraint => &self.definitions.constraints,
            DefinitionKind::View => &self.definitions.views,
        };
        let oids = oid_arg(&args, 0)?;
        let out: StringArray = oids.iter().map(|o| o.and_then(|o| texts.get(&o).cloned())).collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `pg_get_indexdef(oid [, column, pretty])`: the `CREATE UNIQUE INDEX` statement of a key's index (column 0 or
/// no column), or the name of its `column`-th column; NULL for any other oid or column, as in PostgreSQL.
#[derive(Debug, PartialEq, Eq, Hash)]
struct IndexDef {
    definitions: Arc<Definitions>,
    signature: Signature,
}

impl IndexDef {
    fn new(definitions: Arc<Definitions>) -> Self {
        let signature = Signature::one_of(vec![TypeSignature::Any(1), TypeSignature::Any(3)], Volatility::Stable);
        IndexDef { definitions, signature }
    }
}

impl ScalarUDFImpl for IndexDef {
    fn name(&self) -> &str {
        "pg_get_indexdef"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let oids = oid_arg(&args, 0)?;
        let columns = if args.args.len() > 1 { Some(oid_arg(&args, 1)?) } else { None };
        let out: StringArray = (0..oids.len())
            .map(|i| {
                let (def, cols) = self.definitions.indexes.get(&oids.value(i)).filter(|_| oids.is_valid(i))?;
                match &columns {
                    Some(c) if c.is_null(i) => None,
                    Some(c) if c.value(i) > 0 => cols.get(c.value(i) as usize - 1).cloned(),
                    _ => Some(def.clone()),
                }
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_are_postgresql_s_text() {
        let keys: Vec<PrimaryKey> = ["interaction_fact", "interaction_type"]
            .iter()
            .enumerate()
            .map(|(i, name)| PrimaryKey {
                table: crate::transform::schema::mart_table(name).unwrap(),
                table_oid: 16400 + i as i32,
                index_oid: 17000 + 2 * i as i32,
                constraint_oid: 17001 + 2 * i as i32,
            })
            .collect();
        let d = definitions(&keys);
        assert_eq!(d.constraints[&17001], "PRIMARY KEY (interaction_id)");
        // The foreign key gets the first oid after the keys'.
        assert_eq!(
            d.constraints[&17004],
            "FOREIGN KEY (interaction_type_key) REFERENCES interaction_type(interaction_type_key) NOT VALID"
        );
        assert_eq!(d.constraints.len(), 3, "only joins between listed tables: {:?}", d.constraints);
        assert_eq!(
            d.indexes[&17000].0,
            "CREATE UNIQUE INDEX interaction_fact_pkey ON public.interaction_fact USING btree (interaction_id)"
        );
    }
}
