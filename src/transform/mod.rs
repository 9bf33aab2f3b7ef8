//! Transform: turns one merged group (an interaction, a login session, or configuration) into mart rows.
//!
//! The output is a pure function of the merged rows: surrogate keys are hashes of natural keys that are the same
//! in both IDBs of a pair (CALLID, endpoint DBID, event times, LOGINSESSIONID and SEQ, configuration DBIDs), so two
//! appliances that read the same IDBs produce identical rows and keys (DESIGN.md invariant 2).

pub mod aggregate;
pub mod batch;
pub mod schema;

use crate::merge::MergedGroup;
use crate::model::{Day, GroupKey};
use crate::source::contract::dn_type::{self, ResourceRole};
use crate::source::contract::{self, agent_record_type, agent_state, party_state, party_type, work_mode, TableSpec};
use crate::staging::{Cell, FactAddress, FactRow, GroupOutput, StagedRow};
use schema::{
    DATE_TIME, INTERACTION_FACT, INTERACTION_RESOURCE_FACT, INTERACTION_TYPE, INTERACTION_USER_DATA_FACT,
    MEDIATION_SEGMENT_FACT, MEDIA_TYPE, RESOURCE, RESOURCE_GROUP, RESOURCE_GROUP_FACT, RESOURCE_STATE,
    RESOURCE_STATE_REASON, SM_RES_SESSION_FACT, SM_RES_STATE_FACT, SM_RES_STATE_REASON_FACT, TECHNICAL_DESCRIPTOR,
};
use std::collections::BTreeMap;

/// Seconds in one `DATE_TIME` interval.
pub const INTERVAL_SECS: i64 = 900;

/// Surrogate key: the first 63 bits of the BLAKE3 hash of the natural key's parts.
pub fn surrogate_key(parts: &[&str]) -> i64 {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update(&[0x1f]);
    }
    let b = h.finalize();
    let mut eight = [0u8; 8];
    eight.copy_from_slice(&b.as_bytes()[..8]);
    (u64::from_le_bytes(eight) >> 1) as i64
}

/// Key of an agent in `RESOURCE_`.
pub fn agent_resource_key(agent_dbid: i64) -> i64 {
    surrogate_key(&["AGENT", &agent_dbid.to_string()])
}

/// Key of an agent group in `RESOURCE_GROUP`.
pub fn group_key(group_dbid: i64) -> i64 {
    surrogate_key(&["GROUP", &group_dbid.to_string()])
}

/// Key of an endpoint (queue, routing point, extension) in `RESOURCE_`.
pub fn endpoint_resource_key(endpoint_dbid: i64) -> i64 {
    surrogate_key(&["ENDPOINT", &endpoint_dbid.to_string()])
}

/// Key of an interaction in `INTERACTION_FACT`.
pub fn interaction_key(callid: &str) -> i64 {
    surrogate_key(&["IXN", callid])
}

/// UTC day (`YYYY-MM-DD`) of an epoch second.
pub fn day_of(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "1970-01-01".into())
}

/// The `DATE_TIME` key (start of the 15-minute interval) of an epoch second.
pub fn interval_key(ts: i64) -> i64 {
    ts - ts.rem_euclid(INTERVAL_SECS)
}

struct Cols<'a> {
    spec: &'a TableSpec,
}

impl Cols<'_> {
    /// The value of contract column `name` (`None` when NULL); a name the contract lacks panics.
    fn i(&self, r: &StagedRow, name: &str) -> Option<i64> {
        r.int(self.spec.index(name))
    }
    fn t<'r>(&self, r: &'r StagedRow, name: &str) -> Option<&'r str> {
        r.text(self.spec.index(name))
    }
}

fn int(v: i64) -> Cell {
    Cell::Int(v)
}
fn opt_int(v: Option<i64>) -> Cell {
    v.map_or(Cell::Null, Cell::Int)
}
fn text(v: &str) -> Cell {
    Cell::Text(v.to_string())
}
fn opt_text(v: Option<&str>) -> Cell {
    v.map_or(Cell::Null, text)
}

fn addr(table: &schema::MartTable, day: &str, key: i64) -> FactAddress {
    FactAddress {
        table: table.name.to_string(),
        day: if table.partitioned { day.to_string() } else { String::new() },
        key,
    }
}

/// After-call work periods linked to one interaction: (agent DBID, start) → seconds.
pub type AfterCallWork = BTreeMap<(i64, i64), i64>;

/// Transforms one merged group. `after_call_work` is the derived after-call work of an interaction group, found
/// earlier in the agents' login sessions.
pub fn transform_group(
    group: &GroupKey,
    merged: &MergedGroup,
    after_call_work: &AfterCallWork,
    settings: &aggregate::TransformSettings,
) -> GroupOutput {
    let mut out = GroupOutput::new(group.clone());
    match group {
        GroupKey::Interaction(callid) => {
            interaction(callid, merged, after_call_work, &mut out);
            if !out.facts.is_empty() {
                user_data(callid, merged, &settings.user_data_keys, &mut out);
            }
        }
        GroupKey::LoginSession { .. } => {
            if let Some(identity) = group.session_identity() {
                login_session(&identity, merged, &mut out);
            }
        }
        GroupKey::Configuration(table) => configuration(table, merged, &mut out),
        // Rows of a session whose session row is not staged yet make no facts; the other groups are computed
        // from facts, not from staged rows.
        GroupKey::UnlinkedSessionRows { .. }
        | GroupKey::CalendarDay(_)
        | GroupKey::SessionControl
        | GroupKey::QueueAggregateDay(_)
        | GroupKey::AgentAggregateDay(_)
        | GroupKey::FixedDimensions
        | GroupKey::ReasonDimension(_) => {}
    }
    out
}

fn interaction(callid: &str, m: &MergedGroup, acw: &AfterCallWork, out: &mut GroupOutput) {
    let call_cols = Cols { spec: &contract::G_CALL };
    let party_cols = Cols { spec: &contract::G_PARTY };
    let hist_cols = Cols { spec: &contract::G_PARTY_HISTORY };
    let Some(call) = m.rows("G_CALL").iter().max_by_key(|r| r.version) else {
        return;
    };
    let end = call_cols.i(call, "TERMINATED_TS").or(m.close_stuck_at);
    let (Some(start), Some(end)) = (call_cols.i(call, "CREATED_TS"), end) else {
        return;
    };
    let day = day_of(start);
    let ixn_id = interaction_key(callid);

    let mut parties: Vec<&StagedRow> = m.rows("G_PARTY").iter().collect();
    parties.sort_by_key(|p| (party_cols.i(p, "CREATED_TS"), party_cols.i(p, "ID")));
    // History rows name their party by the association id `PARTYID`, not by the party row's `ID`.
    let mut history: BTreeMap<&str, Vec<&StagedRow>> = BTreeMap::new();
    for h in m.rows("G_PARTY_HISTORY") {
        if let Some(pid) = hist_cols.t(h, "PARTYID") {
            history.entry(pid).or_default().push(h);
        }
    }
    let role_of = |p: &StagedRow| party_resource_role(&party_cols, p);
    let source = parties
        .iter()
        .find(|p| party_cols.i(p, "TYPE") == Some(party_type::EXTERNAL))
        .and_then(|p| party_cols.t(p, "ENDPOINTDN"));
    let target = parties
        .iter()
        .find(|p| role_of(p) == Some(ResourceRole::Mediation))
        .and_then(|p| party_cols.t(p, "ENDPOINTDN"));
    let call_type = call_cols.i(call, "CALLTYPE").unwrap_or(contract::call_type::INBOUND);
    let media = call_cols.i(call, "MEDIATYPE").unwrap_or(contract::media_type::VOICE);
    out.facts.push((
        addr(&INTERACTION_FACT, &day, ixn_id),
        FactRow(vec![
            int(ixn_id),
            text(callid),
            text(contract::call_type::name(call_type)),
            int(dimension_key(&INTERACTION_TYPE, &[contract::call_type::name(call_type)])),
            text(contract::media_type::name(media)),
            int(dimension_key(&MEDIA_TYPE, &[contract::media_type::name(media)])),
            opt_text(source),
            opt_text(target),
            int(start),
            int(end),
            int(end - start),
            int(interval_key(start)),
            int(interval_key(end)),
            opt_int(call_cols.i(call, "SWITCHID")),
            opt_text(m.chosen_idb.as_deref()),
            text(m.quality.name()),
            text(&day),
        ]),
    ));

    // Resource parties in order. Each after-call-work period belongs to the party of that agent that left the
    // call last before the period started (an agent may handle the same call twice, e.g. after a transfer).
    let resource_parties: Vec<(&StagedRow, ResourceRole)> =
        parties.iter().filter_map(|p| Some((*p, role_of(p)?))).collect();
    let mut acw_of_party: BTreeMap<usize, (i64, i64)> = BTreeMap::new();
    for (&(agent, acw_start), &secs) in acw {
        let owner = resource_parties
            .iter()
            .enumerate()
            .filter(|(_, (p, role))| *role == ResourceRole::Handling && party_cols.i(p, "AGENTID") == Some(agent))
            .filter(|(_, (p, _))| party_cols.i(p, "TERMINATED_TS").is_some_and(|t| t <= acw_start))
            .max_by_key(|(_, (p, _))| party_cols.i(p, "TERMINATED_TS"));
        if let Some((i, _)) = owner {
            let e = acw_of_party.entry(i).or_insert((0, 0));
            e.0 += 1;
            e.1 += secs;
        }
    }
    let mut ordinal: BTreeMap<(i64, i64), i64> = BTreeMap::new();
    let mut previous: Option<i64> = None;
    for (seq, &(p, role)) in resource_parties.iter().enumerate() {
        let is_agent = role == ResourceRole::Handling;
        let endpoint = party_cols.i(p, "ENDPOINTID").unwrap_or(0);
        let created = party_cols.i(p, "CREATED_TS").unwrap_or(start);
        let n = ordinal.entry((endpoint, created)).or_insert(0);
        *n += 1;
        let key = surrogate_key(&["IRF", callid, &endpoint.to_string(), &created.to_string(), &n.to_string()]);
        let mut steps = party_cols.t(p, "PARTYID").and_then(|pid| history.get(pid)).cloned().unwrap_or_default();
        steps.sort_by_key(|h| hist_cols.i(h, "PSEQ"));
        let d = party_durations(&steps, &hist_cols);
        let party_end = party_cols.i(p, "TERMINATED_TS").unwrap_or(end);
        // A party the source never released (CTI link loss, collector crash) is closed with the interaction.
        let result = match party_cols.i(p, "TERMINATED_TS") {
            None => STUCK,
            Some(released) => {
                // Another resource took over: a resource party after this one (in party order) created by its
                // release — an agent after a queue, the next queue after a routing point or an overflow, a queue
                // after a transfer or an unanswered ring.
                let next = resource_parties
                    .iter()
                    .skip(seq + 1)
                    .any(|(q, _)| party_cols.i(q, "CREATED_TS").is_some_and(|t| t <= released));
                technical_result(PartyExit { is_agent, connected: d.talk_count > 0, next })
            }
        };
        let (role, resource_key) = if is_agent {
            ("Received", agent_resource_key(party_cols.i(p, "AGENTID").unwrap_or(0)))
        } else {
            ("Queue", endpoint_resource_key(endpoint))
        };
        let (acw_count, acw_secs) = acw_of_party.get(&seq).copied().unwrap_or((0, 0));
        out.facts.push((
            addr(&INTERACTION_RESOURCE_FACT, &day, key),
            FactRow(vec![
                int(key),
                int(ixn_id),
                text(callid),
                int(resource_key),
                text(role),
                text(result),
                int(dimension_key(&TECHNICAL_DESCRIPTOR, &[role, result])),
                int(seq as i64 + 1),
                int(created),
                int(party_end),
                int(interval_key(created)),
                int(d.queued),
                int(d.ring_count),
                int(d.ring),
                int(i64::from(d.talk_count > 0)),
                int(d.talk),
                int(d.hold_count),
                int(d.hold),
                int(acw_count),
                int(acw_secs),
                opt_int(previous),
                text(&day),
            ]),
        ));
        if !is_agent {
            let segment = surrogate_key(&["MSF", callid, &endpoint.to_string(), &created.to_string(), &n.to_string()]);
            out.facts.push((
                addr(&MEDIATION_SEGMENT_FACT, &day, segment),
                FactRow(vec![
                    int(segment),
                    int(ixn_id),
                    text(callid),
                    int(resource_key),
                    int(created),
                    int(party_end),
                    int(d.queued),
                    text(result),
                    int(i64::from(result == ABANDONED)),
                    int(i64::from(result == DIVERTED)),
                    int(interval_key(created)),
                    text(&day),
                ]),
            ));
        }
        previous = Some(key);
    }
}

/// What a party is to the mart: a handling resource (an agent's device, a multimedia place), a mediation resource
/// (an ACD queue, routing point, virtual queue; a multimedia interaction queue or workbin), or neither (the
/// customer, an unknown party). An internal party is classified by its DN's configuration type
/// (`ENDPOINTTYPE`); where the IDB lacks that column, a party with an agent is a handling resource and any other
/// internal party a mediation resource.
fn party_resource_role(cols: &Cols<'_>, p: &StagedRow) -> Option<ResourceRole> {
    match cols.i(p, "TYPE")? {
        party_type::INTERNAL => match cols.i(p, "ENDPOINTTYPE") {
            Some(dn) => dn_type::role(dn),
            None if cols.i(p, "AGENTID").is_some_and(|a| a > 0) => Some(ResourceRole::Handling),
            None => Some(ResourceRole::Mediation),
        },
        party_type::MM_PLACE => Some(ResourceRole::Handling),
        party_type::MM_INTERACTION_QUEUE | party_type::MM_WORKBIN => Some(ResourceRole::Mediation),
        _ => None,
    }
}

/// Key of a dimension row: a hash of the dimension's name and the row's values.
pub fn dimension_key(dim: &schema::MartTable, values: &[&str]) -> i64 {
    let mut parts = vec![dim.name];
    parts.extend_from_slice(values);
    surrogate_key(&parts)
}

/// Every row of the fixed dimensions (interaction and media types, technical descriptors, agent states), as the
/// output of the group `X:dimensions`.
pub fn fixed_dimensions() -> GroupOutput {
    let mut out = GroupOutput::new(GroupKey::FixedDimensions);
    let mut add = |dim: &schema::MartTable, values: &[&str]| {
        let key = dimension_key(dim, values);
        let mut row = vec![int(key)];
        row.extend(values.iter().map(|v| text(v)));
        out.facts.push((addr(dim, "", key), FactRow(row)));
    };
    for &c in contract::call_type::ALL {
        add(&INTERACTION_TYPE, &[contract::call_type::name(c)]);
    }
    for &(_, name) in contract::media_type::NAMED {
        add(&MEDIA_TYPE, &[name]);
    }
    add(&MEDIA_TYPE, &[contract::media_type::OTHER]);
    for &is_agent in &[true, false] {
        let role = if is_agent { "Received" } else { "Queue" };
        let mut results: Vec<&str> = [false, true]
            .iter()
            .flat_map(|&connected| [false, true].map(move |next| PartyExit { is_agent, connected, next }))
            .map(technical_result)
            .collect();
        results.push(STUCK);
        results.sort_unstable();
        results.dedup();
        for r in results {
            add(&TECHNICAL_DESCRIPTOR, &[role, r]);
        }
    }
    for &st in &[agent_state::READY, agent_state::NOT_READY, agent_state::AFTER_CALL_WORK, agent_state::BUSY] {
        add(&RESOURCE_STATE, &[agent_state::name(st)]);
    }
    out
}

/// The `RESOURCE_STATE_REASON` row of a reason code, as the output of the group `R:<code>`.
pub fn reason_dimension(code: &str) -> GroupOutput {
    let key = dimension_key(&RESOURCE_STATE_REASON, &[code]);
    GroupOutput {
        facts: vec![(addr(&RESOURCE_STATE_REASON, "", key), FactRow(vec![int(key), text(code)]))],
        ..GroupOutput::new(GroupKey::ReasonDimension(code.to_string()))
    }
}

/// One `INTERACTION_USER_DATA_FACT` row per configured attached-data key the interaction carries: the last value
/// set (by `ADDED_TS`, then row order).
fn user_data(callid: &str, m: &MergedGroup, keys: &[String], out: &mut GroupOutput) {
    let c = Cols { spec: &contract::G_USERDATA_HISTORY };
    let Some((day, ixn_id)) = out.facts.first().map(|(a, _)| (a.day.clone(), a.key)) else { return };
    let mut latest: BTreeMap<&str, (i64, i64, &str)> = BTreeMap::new();
    for r in m.rows("G_USERDATA_HISTORY") {
        let (Some(k), Some(added)) = (c.t(r, "KEYNAME"), c.i(r, "ADDED_TS")) else { continue };
        if !keys.iter().any(|x| x == k) {
            continue;
        }
        let cand = (added, c.i(r, "ID").unwrap_or(0), c.t(r, "VALUE").unwrap_or_default());
        if latest.get(k).is_none_or(|old| (old.0, old.1) < (cand.0, cand.1)) {
            latest.insert(k, cand);
        }
    }
    for (k, (added, _, value)) in latest {
        let key = surrogate_key(&["UD", callid, k]);
        out.facts.push((
            addr(&INTERACTION_USER_DATA_FACT, &day, key),
            FactRow(vec![int(key), int(ixn_id), text(callid), text(k), text(value), int(added), text(&day)]),
        ));
    }
}

/// Technical result of a party the source never released, in an interaction ccmart closed as stuck.
pub const STUCK: &str = "Stuck";

/// Technical result of a party the customer left: a queue stay no resource took over, a ring never answered.
pub const ABANDONED: &str = "Abandoned";
/// Technical result of a queue or routing-point stay that handed the interaction to another resource.
pub const DIVERTED: &str = "Diverted";

/// How a released resource party left its interaction, as the rows show it.
#[derive(Debug, Clone, Copy)]
pub struct PartyExit {
    /// An agent's (handling) party, not a queue's.
    pub is_agent: bool,
    /// Its history has it connected.
    pub connected: bool,
    /// Another resource took over: a later resource party (in party order) was created by its release — an agent
    /// or the next queue after a queue or routing point, a queue or another agent after an agent.
    pub next: bool,
}

/// The technical result of a released resource party, derived from the party rows and history rather than from
/// `CCEVENT` (whose codes ICON documents as call-control events and which ccmart could not verify): a queue party
/// that handed over is `Diverted`, one the customer left `Abandoned`; an agent's party that never connected is
/// `Redirected` when the interaction went on and `Abandoned` when it ended, a connected one `Transferred` when
/// another resource took over and `Completed` otherwise.
pub fn technical_result(exit: PartyExit) -> &'static str {
    match (exit.is_agent, exit.connected, exit.next) {
        (false, _, true) => DIVERTED,
        (false, _, false) => ABANDONED,
        (true, false, true) => "Redirected",
        (true, false, false) => ABANDONED,
        (true, true, true) => "Transferred",
        (true, true, false) => "Completed",
    }
}

/// Durations and counts of one party from its history rows in `PSEQ` order. Each transition's state lasts until
/// the next transition. The state entered by the last transition gets no time (its end is not recorded), but it
/// still counts: a party whose last recorded state is connected was answered, one whose last state is alerting
/// rang — which is what a stuck party (never released by the source) looks like.
fn party_durations(steps: &[&StagedRow], hist_cols: &Cols<'_>) -> Durations {
    let mut d = Durations::default();
    for w in steps.windows(2) {
        let (Some(state), Some(t0), Some(t1)) =
            (hist_cols.i(w[0], "STATE"), hist_cols.i(w[0], "ADDED_TS"), hist_cols.i(w[1], "ADDED_TS"))
        else {
            continue;
        };
        d.add(state, t1 - t0);
    }
    if let Some(state) = steps.last().and_then(|h| hist_cols.i(h, "STATE")) {
        d.add(state, 0);
    }
    d
}

#[derive(Debug, Default, PartialEq)]
struct Durations {
    queued: i64,
    ring: i64,
    ring_count: i64,
    talk: i64,
    talk_count: i64,
    hold: i64,
    hold_count: i64,
}

impl Durations {
    fn add(&mut self, state: i64, secs: i64) {
        match state {
            party_state::QUEUED => self.queued += secs,
            party_state::ALERTING => {
                self.ring += secs;
                self.ring_count += 1;
            }
            party_state::CONNECTED => {
                self.talk += secs;
                self.talk_count += 1;
            }
            party_state::HELD => {
                self.hold += secs;
                self.hold_count += 1;
            }
            _ => {}
        }
    }
}

/// One state period of an agent: a state record and the time until the next one (or the logout).
struct StatePeriod<'r> {
    record: &'r StagedRow,
    /// ccmart's state code, with after-call work derived from the work mode.
    state: i64,
    start: i64,
    end: i64,
}

/// The reason code of a not-ready period: among the session's ended reason codes (`G_AGENT_STATE_RC`) for a
/// not-ready state on the same endpoint, the one whose time overlaps the period most (then the earlier, then the
/// lower `ID`). ICON writes a reason code when it ends, keyed by session, endpoint, queue, state and work mode; it
/// does not name the state record, so the match is by time.
fn reason_of<'r>(period: &StatePeriod<'_>, rc: &Cols<'_>, sh: &Cols<'_>, codes: &'r [StagedRow]) -> Option<&'r str> {
    let endpoint = sh.i(period.record, "ENDPOINTID").filter(|e| *e != 0);
    codes
        .iter()
        .filter(|r| rc.i(r, "AGENTSTATE").is_none_or(|s| s == agent_state::NOT_READY))
        .filter(|r| rc.i(r, "WORKMODE") != Some(work_mode::AFTER_CALL_WORK))
        .filter(|r| match (endpoint, rc.i(r, "ENDPOINTID").filter(|e| *e != 0)) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        })
        .filter_map(|r| {
            let from = rc.i(r, "CREATED_TS")?;
            let to = rc.i(r, "TERMINATED_TS").unwrap_or(from);
            let overlap = to.min(period.end) - from.max(period.start);
            let touches = overlap > 0 || (from == period.start && to == from);
            touches.then(|| ((overlap, std::cmp::Reverse(from), std::cmp::Reverse(rc.i(r, "ID"))), rc.t(r, "VALUE")))
        })
        .max_by_key(|(rank, _)| *rank)
        .and_then(|(_, value)| value)
}

/// The facts of one login session. Keys are built from `identity` (the group: the session's agent and login time)
/// and event times, never from `LOGINSESSIONID` or `SEQ`, which ICON may number differently in the two IDBs of a
/// pair.
fn login_session(identity: &str, m: &MergedGroup, out: &mut GroupOutput) {
    let ls = Cols { spec: &contract::G_LOGIN_SESSION };
    let sh = Cols { spec: &contract::G_AGENT_STATE_HISTORY };
    let rc = Cols { spec: &contract::G_AGENT_STATE_RC };
    let session = m.rows("G_LOGIN_SESSION").iter().max_by_key(|r| r.version);
    let terminated = session.and_then(|s| ls.i(s, "TERMINATED_TS"));
    let session_agent = session.and_then(|s| ls.i(s, "AGENTID"));
    // Only state records open a period; pending-state, work-mode and call records do not.
    let mut records: Vec<&StagedRow> =
        m.rows("G_AGENT_STATE_HISTORY").iter().filter(|r| sh.i(r, "TYPE") == Some(agent_record_type::STATE)).collect();
    // `SEQ` numbers the records of one agent device; time first keeps a session on two devices in order.
    records.sort_by_key(|r| (sh.i(r, "ADDED_TS"), sh.i(r, "SEQ")));
    let codes = m.rows("G_AGENT_STATE_RC");
    let mut acw: Vec<((String, i64, i64), i64)> = Vec::new();
    let mut same_start: BTreeMap<i64, i64> = BTreeMap::new();
    for (i, s) in records.iter().enumerate() {
        let (Some(written), Some(start), Some(seq), Some(agent)) =
            (sh.i(s, "STATE"), sh.i(s, "ADDED_TS"), sh.i(s, "SEQ"), sh.i(s, "AGENTID").or(session_agent))
        else {
            continue;
        };
        if written == agent_state::LOGGED_OUT {
            continue;
        }
        let end = match records.get(i + 1) {
            Some(next) => sh.i(next, "ADDED_TS"),
            None => terminated,
        };
        let Some(end) = end else { continue };
        let state = if written == agent_state::NOT_READY && sh.i(s, "WORKMODE") == Some(work_mode::AFTER_CALL_WORK) {
            agent_state::AFTER_CALL_WORK
        } else {
            written
        };
        let period = StatePeriod { record: s, state, start, end };
        let reason = (state == agent_state::NOT_READY).then(|| reason_of(&period, &rc, &sh, codes)).flatten();
        let sid = sh.t(s, "LOGINSESSIONID").unwrap_or_default();
        let n = same_start.entry(start).or_insert(0);
        *n += 1;
        let (start_text, n_text) = (start.to_string(), n.to_string());
        let key = surrogate_key(&["STATE", identity, &start_text, &n_text]);
        let day = day_of(start);
        out.facts.push((
            addr(&SM_RES_STATE_FACT, &day, key),
            FactRow(vec![
                int(key),
                int(agent_resource_key(agent)),
                text(sid),
                int(seq),
                text(agent_state::name(state)),
                int(dimension_key(&RESOURCE_STATE, &[agent_state::name(state)])),
                opt_text(reason),
                int(start),
                int(end),
                int(end - start),
                int(interval_key(start)),
                text(&day),
            ]),
        ));
        if let Some(reason) = reason {
            let rkey = surrogate_key(&["REASON", identity, &start_text, &n_text]);
            out.facts.push((
                addr(&SM_RES_STATE_REASON_FACT, &day, rkey),
                FactRow(vec![
                    int(rkey),
                    int(agent_resource_key(agent)),
                    text(sid),
                    int(seq),
                    text(reason),
                    int(dimension_key(&RESOURCE_STATE_REASON, &[reason])),
                    int(start),
                    int(end),
                    int(end - start),
                    int(interval_key(start)),
                    text(&day),
                ]),
            ));
        }
        if period.state == agent_state::AFTER_CALL_WORK {
            if let Some(callid) = sh.t(s, "CALLID") {
                acw.push(((callid.to_string(), agent, start), end - start));
            }
        }
    }
    out.after_call_work = acw;
    // The session itself, once the agent has logged out.
    if let (Some(session), Some(end)) = (session, terminated) {
        let (Some(sid), Some(agent), Some(start)) =
            (ls.t(session, "LOGINSESSIONID"), ls.i(session, "AGENTID"), ls.i(session, "CREATED_TS"))
        else {
            return;
        };
        let key = surrogate_key(&["SESSION", identity]);
        let day = day_of(start);
        out.facts.push((
            addr(&SM_RES_SESSION_FACT, &day, key),
            FactRow(vec![
                int(key),
                int(agent_resource_key(agent)),
                text(sid),
                opt_int(ls.i(session, "PLACEID")),
                int(start),
                int(end),
                int(end - start),
                int(interval_key(start)),
                int(interval_key(end)),
                text(&day),
            ]),
        ));
    }
}

fn configuration(table: &str, m: &MergedGroup, out: &mut GroupOutput) {
    if table == contract::GC_AGENT.name {
        let c = Cols { spec: &contract::GC_AGENT };
        for r in m.rows("GC_AGENT") {
            let Some(id) = c.i(r, "ID") else { continue };
            let key = agent_resource_key(id);
            // A person without the "is agent" flag is a supervisor; unknown or missing counts as an agent.
            let kind = match c.i(r, "TYPE") {
                Some(contract::person_type::SUPERVISOR) => "Supervisor",
                _ => "Agent",
            };
            out.facts.push((
                addr(&RESOURCE, "", key),
                FactRow(vec![
                    int(key),
                    text(kind),
                    opt_text(c.t(r, "USERNAME")),
                    int(id),
                    opt_text(c.t(r, "FIRSTNAME")),
                    opt_text(c.t(r, "LASTNAME")),
                    opt_text(c.t(r, "EMPLOYEEID")),
                    Cell::Null,
                ]),
            ));
        }
    } else if table == contract::GC_GROUP.name {
        let c = Cols { spec: &contract::GC_GROUP };
        for r in m.rows("GC_GROUP") {
            let Some(id) = c.i(r, "ID") else { continue };
            let key = group_key(id);
            let kind = match c.i(r, "TYPE") {
                Some(1) => "Agent",
                Some(2) => "Place",
                Some(3) => "DN",
                Some(4) => "Access",
                _ => "Other",
            };
            out.facts.push((
                addr(&RESOURCE_GROUP, "", key),
                FactRow(vec![int(key), opt_text(c.t(r, "NAME")), text(kind), int(id)]),
            ));
        }
    } else if table == contract::GCX_GROUP_AGENT.name {
        let c = Cols { spec: &contract::GCX_GROUP_AGENT };
        // `ID` is numbered by each IDB: a membership is known by its group, its agent and its rank among that
        // agent's memberships of the group, which both IDBs of a pair agree on.
        // (group, agent) → (start, row id, end) of each membership.
        type Memberships = BTreeMap<(i64, i64), Vec<(i64, i64, Option<i64>)>>;
        let mut by_pair: Memberships = BTreeMap::new();
        for r in m.rows("GCX_GROUP_AGENT") {
            let (Some(id), Some(group), Some(agent), Some(start)) =
                (c.i(r, "ID"), c.i(r, "GROUPID"), c.i(r, "AGENTID"), c.i(r, "CREATED_TS"))
            else {
                continue;
            };
            by_pair.entry((group, agent)).or_default().push((start, id, c.i(r, "DELETED_TS")));
        }
        for ((group, agent), mut memberships) in by_pair {
            memberships.sort_unstable();
            for (rank, (start, _, end)) in memberships.into_iter().enumerate() {
                let key = surrogate_key(&["GROUP_MEMBER", &group.to_string(), &agent.to_string(), &rank.to_string()]);
                out.facts.push((
                    addr(&RESOURCE_GROUP_FACT, "", key),
                    FactRow(vec![
                        int(key),
                        int(agent_resource_key(agent)),
                        int(group_key(group)),
                        int(start),
                        opt_int(end),
                        int(interval_key(start)),
                        opt_int(end.map(interval_key)),
                        int(i64::from(end.is_none())),
                    ]),
                ));
            }
        }
    } else if table == contract::GC_ENDPOINT.name {
        let c = Cols { spec: &contract::GC_ENDPOINT };
        for r in m.rows("GC_ENDPOINT") {
            let Some(id) = c.i(r, "ID") else { continue };
            let key = endpoint_resource_key(id);
            let kind = c.i(r, "TYPE").map_or("Other", dn_type::name);
            out.facts.push((
                addr(&RESOURCE, "", key),
                FactRow(vec![
                    int(key),
                    text(kind),
                    opt_text(c.t(r, "DN")),
                    int(id),
                    Cell::Null,
                    Cell::Null,
                    Cell::Null,
                    opt_int(c.i(r, "SWITCHID")),
                ]),
            ));
        }
    }
}

/// The 96 `DATE_TIME` rows of one UTC day, as the output of the calendar group `D:<day>`. Intervals are UTC (so
/// every day has 96, whatever daylight saving does); the `local_*` columns give each interval's start in `tz`.
pub fn calendar_day(day: Day, tz: chrono_tz::Tz) -> GroupOutput {
    use chrono::{Datelike, TimeZone, Timelike};
    let mut out = GroupOutput::new(GroupKey::CalendarDay(day));
    let base = day.start();
    let day = day.to_string();
    let day = day.as_str();
    for i in 0..96 {
        let key = base + i * INTERVAL_SECS;
        let (hour, minute) = (i / 4, (i % 4) * 15);
        let Some(local) = tz.timestamp_opt(key, 0).single() else { continue };
        let local_date = local.format("%Y-%m-%d").to_string();
        out.facts.push((
            addr(&DATE_TIME, day, key),
            FactRow(vec![
                int(key),
                text(day),
                int(hour),
                int(minute),
                text(&format!("{day} {hour:02}:{minute:02}")),
                text(tz.name()),
                text(&local_date),
                int(i64::from(local.hour())),
                int(i64::from(local.minute())),
                int(i64::from(local.weekday().number_from_monday())),
                int(i64::from(local.iso_week().week())),
                int(i64::from(local.month())),
                int(i64::from((local.month() - 1) / 3 + 1)),
                int(i64::from(local.year())),
                text(&local.format("%Y-%m-%d %H:%M").to_string()),
                text(day),
            ]),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::staging::Value;

    fn day(text: &str) -> Day {
        text.parse().unwrap()
    }

    #[test]
    fn surrogate_keys_are_stable_positive_and_distinct() {
        assert_eq!(interaction_key("A"), interaction_key("A"));
        assert_ne!(interaction_key("A"), interaction_key("B"));
        // Parts are delimited: ("AB","C") and ("A","BC") differ.
        assert_ne!(surrogate_key(&["AB", "C"]), surrogate_key(&["A", "BC"]));
        assert!((0..1000).all(|i| surrogate_key(&[&i.to_string()]) >= 0));
        assert_ne!(agent_resource_key(5), endpoint_resource_key(5));
    }

    #[test]
    fn calendar_has_96_intervals_aligned_to_the_day() {
        let out = calendar_day(day("2026-11-24"), chrono_tz::UTC);
        assert_eq!(out.facts.len(), 96);
        let first = out.facts[0].0.key;
        assert_eq!(day_of(first), "2026-11-24");
        assert_eq!(interval_key(first + 899), first);
        assert_eq!(out.facts[95].0.key, first + 95 * INTERVAL_SECS);
    }

    #[test]
    fn calendar_local_columns_follow_the_configured_time_zone() {
        let tz: chrono_tz::Tz = "America/New_York".parse().unwrap();
        let out = calendar_day(day("2026-11-24"), tz);
        let first = &out.facts[0].1 .0;
        // 2026-11-24 00:00 UTC is Monday 2026-11-23 19:00 in New York (EST, UTC-5), ISO week 48, Q4.
        assert_eq!(first[5], Cell::Text("America/New_York".into()));
        assert_eq!(first[6], Cell::Text("2026-11-23".into()));
        assert_eq!(
            (first[7].clone(), first[9].clone(), first[10].clone(), first[12].clone()),
            (Cell::Int(19), Cell::Int(1), Cell::Int(48), Cell::Int(4))
        );
        // A daylight-saving change day still has 96 UTC intervals.
        assert_eq!(calendar_day(day("2026-03-08"), tz).facts.len(), 96);
    }

    /// Regression: a stuck party (never released by the source) whose last recorded state is connected had
    /// `talk_count` 0, one whose last state is alerting `ring_count` 0, so `AG2_AGENT_*.accepted` missed an
    /// answered call that the queue side counted as accepted. The last state counts; it gets no time.
    #[test]
    fn the_last_recorded_state_of_a_party_counts_without_time() {
        let cols = Cols { spec: &contract::G_PARTY_HISTORY };
        let step = |pseq: i64, state: i64, at: i64| {
            let spec = &contract::G_PARTY_HISTORY;
            let mut values = vec![None; spec.columns.len()];
            let mut set = |name: &str, v: Value| values[spec.column_index(name).unwrap()] = Some(v);
            set("PHID", Value::Int(pseq));
            set("PARTYID", Value::Text("P".into()));
            set("CALLID", Value::Text("C".into()));
            set("PSEQ", Value::Int(pseq));
            set("STATE", Value::Int(state));
            set("ADDED_TS", Value::Int(at));
            set("GSYS_SEQ", Value::Int(pseq));
            StagedRow { version: pseq, values }
        };
        let durations = |states: &[(i64, i64)]| {
            let rows: Vec<StagedRow> = states.iter().enumerate().map(|(i, &(s, t))| step(i as i64, s, t)).collect();
            party_durations(&rows.iter().collect::<Vec<_>>(), &cols)
        };
        let stuck_talking = durations(&[(party_state::ALERTING, 0), (party_state::CONNECTED, 10)]);
        assert_eq!(stuck_talking, Durations { ring: 10, ring_count: 1, talk_count: 1, ..Default::default() });
        let stuck_ringing = durations(&[(party_state::ALERTING, 0)]);
        assert_eq!(stuck_ringing, Durations { ring_count: 1, ..Default::default() });
        let stuck_held = durations(&[(party_state::CONNECTED, 0), (party_state::HELD, 5)]);
        assert_eq!(stuck_held, Durations { talk: 5, talk_count: 1, hold_count: 1, ..Default::default() });
        let released =
            durations(&[(party_state::ALERTING, 0), (party_state::CONNECTED, 10), (party_state::RELEASED, 70)]);
        assert_eq!(released, Durations { ring: 10, ring_count: 1, talk: 60, talk_count: 1, ..Default::default() });
        assert_eq!(durations(&[]), Durations::default());
    }

    /// A row of `spec` with the named values (the rest NULL).
    fn staged(spec: &TableSpec, values: &[(&str, Value)]) -> StagedRow {
        let mut row = vec![None; spec.columns.len()];
        for (name, v) in values {
            row[spec.column_index(name).unwrap()] = Some(v.clone());
        }
        StagedRow { version: 1, values: row }
    }

    /// A routing point hands the call to a queue, the queue to an agent: both mediation stays are `Diverted`, not
    /// `Abandoned` (only a later handling party used to count), and the agent's leg is `Completed`.
    #[test]
    fn a_routing_point_that_hands_over_to_a_queue_is_diverted() {
        use crate::merge::MergedGroup;
        let (i, t) = (Value::Int, |s: &str| Value::Text(s.to_string()));
        let party = |id: i64, pid: &str, dn: i64, endpoint: i64, agent: i64, from: i64, to: i64| {
            staged(
                &contract::G_PARTY,
                &[
                    ("ID", i(id)),
                    ("PARTYID", t(pid)),
                    ("CALLID", t("C1")),
                    ("TYPE", i(party_type::INTERNAL)),
                    ("ENDPOINTTYPE", i(dn)),
                    ("PROLE", i(2)),
                    ("STATE", i(party_state::RELEASED)),
                    ("ENDPOINTID", i(endpoint)),
                    ("AGENTID", i(agent)),
                    ("CREATED_TS", i(from)),
                    ("TERMINATED_TS", i(to)),
                    ("GSYS_SEQ", i(id)),
                ],
            )
        };
        let step = |phid: i64, pid: &str, pseq: i64, state: i64, at: i64| {
            staged(
                &contract::G_PARTY_HISTORY,
                &[
                    ("PHID", i(phid)),
                    ("PARTYID", t(pid)),
                    ("CALLID", t("C1")),
                    ("PSEQ", i(pseq)),
                    ("STATE", i(state)),
                    ("ADDED_TS", i(at)),
                    ("GSYS_SEQ", i(phid)),
                ],
            )
        };
        let call = staged(
            &contract::G_CALL,
            &[
                ("ID", i(1)),
                ("CALLID", t("C1")),
                ("CALLTYPE", i(contract::call_type::INBOUND)),
                ("MEDIATYPE", i(contract::media_type::VOICE)),
                ("CREATED_TS", i(100)),
                ("TERMINATED_TS", i(400)),
                ("GSYS_SEQ", i(1)),
            ],
        );
        let mut tables = BTreeMap::new();
        tables.insert("G_CALL".to_string(), vec![call]);
        tables.insert(
            "G_PARTY".to_string(),
            vec![
                party(2, "rp", dn_type::ROUTING_POINT, 50, 0, 100, 110),
                party(3, "q", dn_type::ACD_QUEUE, 60, 0, 110, 150),
                party(4, "ag", dn_type::EXTENSION, 70, 7, 150, 400),
            ],
        );
        tables.insert(
            "G_PARTY_HISTORY".to_string(),
            vec![
                step(10, "rp", 1, party_state::QUEUED, 100),
                step(11, "rp", 2, party_state::RELEASED, 110),
                step(12, "q", 1, party_state::QUEUED, 110),
                step(13, "q", 2, party_state::RELEASED, 150),
                step(14, "ag", 1, party_state::ALERTING, 150),
                step(15, "ag", 2, party_state::CONNECTED, 155),
                step(16, "ag", 3, party_state::RELEASED, 400),
            ],
        );
        let merged = MergedGroup { tables, ..Default::default() };
        let settings = aggregate::TransformSettings::default();
        let out = transform_group(&GroupKey::Interaction("C1".into()), &merged, &AfterCallWork::new(), &settings);
        let result_at = schema::INTERACTION_RESOURCE_FACT.columns.iter().position(|(c, _)| *c == "technical_result");
        let results: Vec<Cell> = out
            .facts
            .iter()
            .filter(|(a, _)| a.table == schema::INTERACTION_RESOURCE_FACT.name)
            .map(|(_, r)| r.0[result_at.unwrap()].clone())
            .collect();
        assert_eq!(results, ["Diverted", "Diverted", "Completed"].map(|r| Cell::Text(r.into())));
    }

    #[test]
    fn technical_results() {
        let exit = |is_agent, connected, next| technical_result(PartyExit { is_agent, connected, next });
        assert_eq!(exit(false, false, true), "Diverted");
        assert_eq!(exit(false, false, false), "Abandoned");
        assert_eq!(exit(true, true, true), "Transferred");
        assert_eq!(exit(true, false, true), "Redirected");
        assert_eq!(exit(true, true, false), "Completed");
        assert_eq!(exit(true, false, false), "Abandoned");
    }
}
