//! Ground truth: everything the simulator generated, in the terms a perfect mart would report it.
//! Tests compare the mart with this, never with numbers copied from an earlier run.

use serde::Serialize;
use std::collections::BTreeMap;

/// How one agent leg of a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LegResult {
    /// Answered and released normally.
    Completed,
    /// Answered, then transferred to another queue.
    Transferred,
    /// Rang without answer and went back to the queue.
    Redirected,
}

/// One agent's part in a call.
#[derive(Debug, Clone, Serialize)]
pub struct TruthLeg {
    /// Agent configuration DBID.
    pub agent_dbid: i64,
    /// Agent extension endpoint DBID.
    pub endpoint_dbid: i64,
    /// When the agent's extension started ringing.
    pub start_ts: i64,
    /// When the agent's party left the call.
    pub end_ts: i64,
    /// Seconds ringing.
    pub ring_secs: i64,
    /// Seconds connected (talking, not on hold).
    pub talk_secs: i64,
    /// Number of times put on hold.
    pub hold_count: i64,
    /// Seconds on hold.
    pub hold_secs: i64,
    /// Seconds of after-call work that followed (0 when none).
    pub acw_secs: i64,
    /// Number of after-call-work periods linked to this leg (0 or 1).
    pub acw_count: i64,
    /// How the leg ended.
    pub result: LegResult,
}

/// One stay of a call in an ACD queue.
#[derive(Debug, Clone, Serialize)]
pub struct TruthQueueVisit {
    /// Queue endpoint DBID.
    pub queue_dbid: i64,
    /// Entered the queue.
    pub start_ts: i64,
    /// Left the queue.
    pub end_ts: i64,
    /// True when the caller hung up while waiting here.
    pub abandoned: bool,
}

/// One inbound call.
#[derive(Debug, Clone, Serialize)]
pub struct TruthCall {
    /// The interaction's CALLID (same in both IDBs of the pair).
    pub callid: String,
    /// Site index (0-based) whose SIP Server handled it.
    pub site: usize,
    /// Call created.
    pub start_ts: i64,
    /// Call ended.
    pub end_ts: i64,
    /// Customer number.
    pub ani: String,
    /// Dialled number (routing point DN).
    pub dnis: String,
    /// Queue stays in order.
    pub queue_visits: Vec<TruthQueueVisit>,
    /// Agent legs in order.
    pub legs: Vec<TruthLeg>,
    /// Attached data set on the call.
    pub user_data: BTreeMap<String, String>,
}

impl TruthCall {
    /// True when the caller hung up before any agent answered the last queue visit.
    pub fn abandoned(&self) -> bool {
        self.queue_visits.last().is_some_and(|v| v.abandoned)
    }
}

/// One agent state period.
#[derive(Debug, Clone, Serialize)]
pub struct TruthStatePeriod {
    /// LOGINSESSIONID.
    pub session_id: String,
    /// Agent DBID.
    pub agent_dbid: i64,
    /// State code (`contract::agent_state`).
    pub state: i64,
    /// Start (epoch seconds).
    pub start_ts: i64,
    /// End (epoch seconds).
    pub end_ts: i64,
    /// Not-ready reason code.
    pub reason: Option<String>,
}

/// One ended agent login session.
#[derive(Debug, Clone, Serialize)]
pub struct TruthSession {
    /// LOGINSESSIONID.
    pub session_id: String,
    /// Agent DBID.
    pub agent_dbid: i64,
    /// Login (epoch seconds).
    pub start_ts: i64,
    /// Logout (epoch seconds).
    pub end_ts: i64,
}

/// One period of an agent's membership in an agent group.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TruthMembership {
    /// Agent DBID.
    pub agent_dbid: i64,
    /// Group DBID.
    pub group_dbid: i64,
    /// Group name.
    pub group_name: String,
    /// Start (epoch seconds).
    pub from: i64,
    /// End (epoch seconds); `None` while current.
    pub to: Option<i64>,
}

/// Everything generated so far. Calls appear once ended; their after-call work is filled in when it ends.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GroundTruth {
    /// Ended calls by CALLID.
    pub calls: BTreeMap<String, TruthCall>,
    /// Ended agent state periods.
    pub states: Vec<TruthStatePeriod>,
    /// Ended login sessions.
    pub sessions: Vec<TruthSession>,
    /// Number of login sessions started.
    pub sessions_started: usize,
    /// Number of login sessions ended.
    pub sessions_ended: usize,
    /// Agent group memberships, ended and current.
    pub memberships: Vec<TruthMembership>,
}

impl GroundTruth {
    /// The group an agent belonged to at `ts`.
    pub fn group_of(&self, agent_dbid: i64, ts: i64) -> Option<&TruthMembership> {
        self.memberships.iter().find(|m| m.agent_dbid == agent_dbid && m.from <= ts && m.to.is_none_or(|t| ts < t))
    }

    /// Number of ended calls.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }
}
