#!/usr/bin/env node
// node-postgres (pg@8) compatibility checks: ccmart vs PostgreSQL (see README.md).
//   node node_pg_check.js --ccmart DSN --postgres DSN [--only a,b]
// The pg module is loaded from $CCMART_NODE_MODULES
// (default /root/.cache/ccmart-clients/node/node_modules).
// Run with TZ=America/New_York (set below if unset, before any Date is made).
'use strict';
if (!process.env.TZ) process.env.TZ = 'America/New_York';

const path = require('path');
const modules = process.env.CCMART_NODE_MODULES || '/root/.cache/ccmart-clients/node/node_modules';
const pg = require(path.join(modules, 'pg'));
const util = require('util');

const CLIENT = 'node-pg';
// Checks that fail against ccmart today (strict xfail: a listed check that passes fails the run).
const EXPECTED_GAPS = new Set([
]);
const CONNECT_TIMEOUT_MS = 10000;
const QUERY_TIMEOUT_MS = 30000;
const SIDES = ['ccmart', 'postgres'];

function parseArgs(argv) {
  const a = { ccmart: process.env.CCMART_DSN, postgres: process.env.POSTGRES_DSN, only: null };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--ccmart') a.ccmart = argv[++i];
    else if (argv[i] === '--postgres') a.postgres = argv[++i];
    else if (argv[i] === '--only') a.only = new Set(argv[++i].split(','));
    else { console.error(`unknown argument ${argv[i]}`); process.exit(2); }
  }
  if (!a.ccmart || !a.postgres) { console.error('--ccmart and --postgres are required'); process.exit(2); }
  for (const d of [a.ccmart, a.postgres]) {
    const h = new URL(d).hostname;
    if (!['127.0.0.1', 'localhost', '[::1]'].includes(h)) { console.error(`refusing non-local host ${h}`); process.exit(2); }
  }
  return a;
}

const args = parseArgs(process.argv.slice(2));
const dsns = { ccmart: args.ccmart, postgres: args.postgres };
const results = new Map();

function show(v) {
  const s = typeof v === 'string' ? v : util.inspect(v, { depth: 6, breakLength: Infinity, maxArrayLength: 500 });
  return s.length > 3000 ? s.slice(0, 3000) + `... <${s.length - 3000} more chars>` : s;
}

class Failure {
  constructor(e) { this.sqlstate = e && e.code || null; this.text = `ERROR ${this.sqlstate || '-----'} ${e && e.name}: ${e && e.message}`; }
}

// deep, type-strict equality; returns null or a description of the first difference
function diff(a, b, p = '$') {
  const ta = Object.prototype.toString.call(a), tb = Object.prototype.toString.call(b);
  if (ta !== tb) return `${p}: type ${ta} ${show(a)} != ${tb} ${show(b)}`;
  if (a instanceof Date) return a.getTime() === b.getTime() ? null : `${p}: ${a.toISOString()} != ${b.toISOString()}`;
  if (Array.isArray(a)) {
    if (a.length !== b.length) return `${p}: length ${a.length} != ${b.length}`;
    for (let i = 0; i < a.length; i++) { const d = diff(a[i], b[i], `${p}[${i}]`); if (d) return d; }
    return null;
  }
  if (a && typeof a === 'object') {
    const ka = Object.keys(a), kb = Object.keys(b);
    if (ka.join('\u0000') !== kb.join('\u0000')) return `${p}: keys ${show(ka)} != ${show(kb)}`;
    for (const k of ka) { const d = diff(a[k], b[k], `${p}.${k}`); if (d) return d; }
    return null;
  }
  return Object.is(a, b) ? null : `${p}: ${show(a)} != ${show(b)}`;
}

function record(check, ok, c, p, extra = {}) {
  const line = { client: CLIENT, check, ok: !!ok, ccmart: show(c instanceof Failure ? c.text : c),
                 postgres: show(p instanceof Failure ? p.text : p), ...extra };
  if (EXPECTED_GAPS.has(check)) line.expected_gap = true;
  console.log(JSON.stringify(line));
  results.set(check, !!ok);
}

async function withClient(side, fn) {
  const c = new pg.Client({ connectionString: dsns[side], connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
                            query_timeout: QUERY_TIMEOUT_MS });
  await c.connect();
  try { return await fn(c); } finally { await c.end().catch(() => {}); }
}

async function runSide(fn, side) {
  try { return await withClient(side, fn); } catch (e) { return new Failure(e); }
}

async function compare(check, fn) {
  if (args.only && !args.only.has(check)) return;
  const v = {};
  for (const s of SIDES) v[s] = await runSide(fn, s);
  const c = v.ccmart, p = v.postgres;
  if (c instanceof Failure || p instanceof Failure) return record(check, false, c, p, { diff: 'raised' });
  const d = diff(c, p);
  record(check, d === null, c, p, d ? { diff: d } : {});
}

async function main() {
  const rows = (r) => r.rows;
  // media types present in the data (taken from PostgreSQL, so both sides get the same parameter)
  let mediaTypes = ['Voice', 'Chat'];
  try {
    const present = await withClient('postgres', async (c) =>
      (await c.query('SELECT DISTINCT media_type FROM interaction_fact ORDER BY media_type')).rows.map((r) => r.media_type));
    if (present.length) mediaTypes = [present[0], 'Chat', ...present.slice(1, 2)];
  } catch (e) { /* keep default */ }

  await compare('connect_select', async (c) => rows(await c.query(
    'SELECT media_type_key, media_type FROM media_type ORDER BY media_type_key')));
  await compare('array_param_any', async (c) => rows(await c.query(
    'SELECT count(*) FROM interaction_fact WHERE media_type = ANY($1)', [mediaTypes])));
  await compare('array_param_any_aliased', async (c) => rows(await c.query(
    'SELECT count(*) AS n FROM interaction_fact WHERE media_type = ANY($1)', [mediaTypes])));
  await compare('to_timestamp_as_date_gettime', async (c) => rows(await c.query(
    'SELECT interaction_id, to_timestamp(start_ts) AS started FROM interaction_fact ORDER BY interaction_id LIMIT 25'))
    .map((r) => [r.interaction_id, r.started instanceof Date ? r.started.getTime() : `not a Date: ${show(r.started)}`]));
  await compare('to_timestamp_date_type', async (c) => rows(await c.query(
    'SELECT to_timestamp(start_ts) AS started FROM interaction_fact ORDER BY interaction_id LIMIT 3'))
    .map((r) => Object.prototype.toString.call(r.started)));
  await compare('bigint_keys_as_strings', async (c) => rows(await c.query(
    'SELECT resource_key, resource_name FROM resource_ ORDER BY resource_key')));
  await compare('field_metadata', async (c) => (await c.query(
    'SELECT resource_key AS k, resource_name AS n, to_timestamp(0) AS t, 1.5::float8 AS f FROM resource_ ORDER BY resource_key LIMIT 1'))
    .fields.map((f) => [f.name, f.dataTypeID]));
  await compare('prepared_statement_named', async (c) => {
    const out = [];
    for (const t of ['Agent', 'Queue', 'Agent', 'Extension']) {
      out.push((await c.query({ name: 'count_by_type', text: 'SELECT count(*) AS n FROM resource_ WHERE resource_type = $1',
                                values: [t] })).rows);
    }
    return out;
  });
  await compare('param_int_and_text', async (c) => rows(await c.query(
    'SELECT interaction_id, duration FROM interaction_fact WHERE duration > $1 AND media_type = $2 ORDER BY interaction_id LIMIT 20',
    [600, mediaTypes[0]])));
  await compare('param_date_object', async (c) => rows(await c.query(
    'SELECT count(*) AS n FROM interaction_fact WHERE to_timestamp(start_ts) >= $1',
    [new Date(Date.UTC(2000, 0, 1))])));
  await compare('error_code_undefined_table', async (c) => {
    try { await c.query('SELECT * FROM no_such_table'); return 'no error'; } catch (e) { return e.code; }
  });

  const failedUnexpected = [...results].filter(([k, ok]) => !ok && !EXPECTED_GAPS.has(k)).map(([k]) => k).sort();
  const passedGaps = [...results].filter(([k, ok]) => ok && EXPECTED_GAPS.has(k)).map(([k]) => k).sort();
  const summary = { client: CLIENT, summary: true, checks: results.size, passed: [...results.values()].filter(Boolean).length,
    failed: [...results.values()].filter((x) => !x).length,
    expected_gaps_failing: [...results].filter(([k, ok]) => !ok && EXPECTED_GAPS.has(k)).map(([k]) => k).sort(),
    unexpected_failures: failedUnexpected, gaps_now_passing: passedGaps };
  if (passedGaps.length) summary.message = `these checks pass now: remove them from EXPECTED_GAPS in node_pg_check.js: ${passedGaps}`;
  console.log(JSON.stringify(summary));
  process.exitCode = failedUnexpected.length || passedGaps.length ? 1 : 0;
}

const guard = setTimeout(() => { console.error('node_pg_check: overall timeout'); process.exit(1); }, 300000);
guard.unref();
main().catch((e) => { console.error(e); process.exit(1); });
