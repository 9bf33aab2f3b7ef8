//! The discrete-event engine behind [`Simulator`].

use super::truth::{
    GroundTruth, LegResult, TruthCall, TruthLeg, TruthMembership, TruthQueueVisit, TruthSession, TruthStatePeriod,
};
use super::*;
use crate::source::contract::{agent_record_type, agent_state, call_state, call_type, dn_type, login_state};
use crate::source::contract::{media_type, party_end_cause as cause, party_role, party_state, party_type};
use crate::source::contract::{person_type, work_mode};
use crate::source::{IdbValue, IdbWrite, WriteKind};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Arrival,
    Abandon { call: usize, visit: usize },
    RingEnd { call: usize },
    HoldStart { call: usize },
    HoldEnd { call: usize },
    TalkEnd { call: usize },
    AcwEnd { agent: usize },
    BreakStart { agent: usize, gen: u64 },
    BreakEnd { agent: usize },
    Login { agent: usize },
    LogoutDue { agent: usize },
}

#[derive(Debug)]
struct Session {
    handle: i64,
    id: String,
    start: i64,
    seq: i64,
    state: i64,
    state_start: i64,
    reason: Option<String>,
}

#[derive(Debug)]
struct Agent {
    dbid: i64,
    dn_dbid: i64,
    dn: String,
    session: Option<Session>,
    session_count: u64,
    call: Option<usize>,
    idle_since: i64,
    logout_pending: bool,
    break_gen: u64,
    acw_call: Option<(usize, String)>,
}

#[derive(Debug, Clone, Copy)]
struct Party {
    handle: i64,
    pseq: i64,
    state: i64,
}

#[derive(Debug)]
struct Call {
    handle: i64,
    callid: String,
    customer: Party,
    queue: usize,
    queue_party: Option<Party>,
    agent_party: Option<Party>,
    agent: Option<usize>,
    visit: usize,
    transfers: u32,
    leg_state_since: i64,
    truth: TruthCall,
}

struct Site {
    index: usize,
    rng: ChaCha8Rng,
    now: i64,
    events: BinaryHeap<Reverse<(i64, u64, Ev)>>,
    next_event: u64,
    next_handle: i64,
    agents: Vec<Agent>,
    calls: HashMap<usize, Call>,
    next_call: usize,
    waiting: VecDeque<usize>,
    arrivals: bool,
    /// When the next call arrives, in continuous time (epoch seconds with a fraction): arrivals are a Poisson
    /// process at exactly `calls_per_hour`, and several calls may start in one second (IDB times have one-second
    /// resolution, so each is written at the second it falls in). Rounding each gap to whole seconds instead, with
    /// at least one, capped a site at 86,400 calls a day whatever the rate asked.
    next_arrival: f64,
    writes: Vec<IdbWrite>,
    truth: GroundTruth,
    record_truth: bool,
    per_idb_session_ids: bool,
}

/// The simulated contact center. See the module docs of [`crate::sim`].
pub struct Simulator {
    settings: SimSettings,
    sites: Vec<Site>,
    start_ts: i64,
    config_written: bool,
    /// Current agent-group memberships: (site, agent index) → (GCX_GROUP_AGENT row handle, queue index, since).
    memberships: BTreeMap<(usize, usize), (i64, usize, i64)>,
    /// Memberships that ended (ground truth).
    ended_memberships: Vec<TruthMembership>,
    /// When the next group change happens, and how many happened.
    next_group_change: i64,
    group_changes: i64,
    /// No group change at or after this (set by [`finish`](Self::finish)).
    changes_until: i64,
}

/// Columns of a new `GCX_GROUP_AGENT` row: agent `i` of site `s` joins the group of queue `q` at `t`.
fn membership_columns(s: usize, i: usize, q: usize, t: i64) -> Vec<(&'static str, IdbValue)> {
    vec![
        ("GROUPID", IdbValue::Int(queue_dbid(s, q))),
        ("AGENTID", IdbValue::Int(agent_dbid(s, i))),
        ("STATUS", IdbValue::Int(1)),
        ("CREATED", IdbValue::Timestamp(t)),
        ("CREATED_TS", IdbValue::Int(t)),
    ]
}

/// Who and when of one `G_AGENT_STATE_HISTORY` record.
#[derive(Clone, Copy)]
struct AgentRecord<'a> {
    sid: &'a str,
    agent: i64,
    endpoint: i64,
    seq: i64,
    at: i64,
}

/// `G_PARTY_HISTORY.CHANGETYPE` codes (the vendor's): party created, terminated, state changed.
const PARTY_CREATED: i64 = 1;
const PARTY_TERMINATED: i64 = 2;
const PARTY_STATE_CHANGED: i64 = 3;

fn exp(rng: &mut ChaCha8Rng, mean: f64) -> f64 {
    let u: f64 = rng.random();
    -mean * (1.0 - u).ln()
}

fn secs(rng: &mut ChaCha8Rng, mean: f64, min: i64) -> i64 {
    (exp(rng, mean).round() as i64).max(min)
}

impl Simulator {
    /// A contact center whose history starts at `start_ts` (epoch seconds). Nothing is generated until
    /// [`advance_to`](Self::advance_to).
    pub fn new(settings: SimSettings, start_ts: i64) -> Self {
        let sites = (0..settings.sites)
            .map(|s| {
                let rng = ChaCha8Rng::seed_from_u64(settings.seed.wrapping_mul(1_000_003).wrapping_add(s as u64));
                let agents = (0..settings.agents_per_site)
                    .map(|i| Agent {
                        dbid: agent_dbid(s, i),
                        dn_dbid: agent_dn_dbid(s, i),
                        dn: format!("7{}{:03}", s + 1, i),
                        session: None,
                        session_count: 0,
                        call: None,
                        idle_since: start_ts,
                        logout_pending: false,
                        break_gen: 0,
                        acw_call: None,
                    })
                    .collect();
                let mut site = Site {
                    index: s,
                    rng,
                    now: start_ts,
                    events: BinaryHeap::new(),
                    next_event: 0,
                    next_handle: 0,
                    agents,
                    calls: HashMap::new(),
                    next_call: 0,
                    waiting: VecDeque::new(),
                    arrivals: true,
                    next_arrival: start_ts as f64,
                    writes: Vec::new(),
                    truth: GroundTruth::default(),
                    record_truth: settings.record_truth,
                    per_idb_session_ids: settings.per_idb_login_session_ids,
                };
                for a in 0..settings.agents_per_site {
                    let offset = site.rng.random_range(0..120);
                    site.schedule(start_ts + offset, Ev::Login { agent: a });
                }
                site.next_arrival += exp(&mut site.rng, 3600.0 / settings.calls_per_hour.max(0.001));
                let first = site.next_arrival.floor() as i64;
                site.schedule(first, Ev::Arrival);
                site
            })
            .collect();
        let mut memberships = BTreeMap::new();
        if settings.queues_per_site > 0 {
            for s in 0..settings.sites {
                for i in 0..settings.agents_per_site {
                    let handle = 5_000_000 + (s as i64) * 1000 + i as i64;
                    memberships.insert((s, i), (handle, i % settings.queues_per_site, start_ts));
                }
            }
        }
        Simulator {
            next_group_change: start_ts + settings.group_change_secs.max(1),
            settings,
            sites,
            start_ts,
            config_written: false,
            memberships,
            ended_memberships: Vec::new(),
            group_changes: 0,
            changes_until: i64::MAX,
        }
    }

    /// The settings in use.
    pub fn settings(&self) -> &SimSettings {
        &self.settings
    }

    /// The ground truth of everything that has ended so far, all sites together.
    pub fn truth(&self) -> GroundTruth {
        let mut all = GroundTruth::default();
        for site in &self.sites {
            all.calls.extend(site.truth.calls.iter().map(|(k, v)| (k.clone(), v.clone())));
            all.states.extend(site.truth.states.iter().cloned());
            all.sessions.extend(site.truth.sessions.iter().cloned());
            all.sessions_started += site.truth.sessions_started;
            all.sessions_ended += site.truth.sessions_ended;
        }
        all.memberships = self.ended_memberships.clone();
        all.memberships.extend(self.memberships.iter().map(|(&(s, i), &(_, q, since))| TruthMembership {
            agent_dbid: agent_dbid(s, i),
            group_dbid: queue_dbid(s, q),
            group_name: group_name(s, q),
            from: since,
            to: None,
        }));
        all
    }

    /// The agent-group changes due before `until` (see [`SimSettings::group_change_secs`]): each ends one
    /// membership row and starts another, written to every IDB like the rest of the configuration.
    fn group_change_writes(&mut self, until: i64) -> Vec<IdbWrite> {
        let mut w = Vec::new();
        let (every, queues, agents) =
            (self.settings.group_change_secs, self.settings.queues_per_site, self.settings.agents_per_site);
        if every <= 0 || queues < 2 || agents == 0 {
            return w;
        }
        while self.next_group_change < until.min(self.changes_until) {
            let (t, k) = (self.next_group_change, self.group_changes);
            let i = (k as usize) % agents;
            for s in 0..self.settings.sites {
                let Some((handle, q, since)) = self.memberships.get(&(s, i)).copied() else { continue };
                w.push(IdbWrite {
                    table: "GCX_GROUP_AGENT",
                    handle,
                    kind: WriteKind::Update,
                    columns: vec![
                        ("DELETED", IdbValue::Timestamp(t)),
                        ("DELETED_TS", IdbValue::Int(t)),
                        ("STATUS", IdbValue::Int(0)),
                    ],
                });
                self.ended_memberships.push(TruthMembership {
                    agent_dbid: agent_dbid(s, i),
                    group_dbid: queue_dbid(s, q),
                    group_name: group_name(s, q),
                    from: since,
                    to: Some(t),
                });
                let next_q = (q + 1) % queues;
                let next_handle = 6_000_000 + k * 10_000 + (s as i64) * 1000 + i as i64;
                w.push(IdbWrite {
                    table: "GCX_GROUP_AGENT",
                    handle: next_handle,
                    kind: WriteKind::Insert,
                    columns: membership_columns(s, i, next_q, t),
                });
                self.memberships.insert((s, i), (next_handle, next_q, t));
            }
            self.group_changes += 1;
            self.next_group_change += every;
        }
        w
    }

    /// The configuration every collector writes into its IDB (tenant, switches, agents, places, DNs, groups).
    pub fn configuration_writes(&self) -> Vec<IdbWrite> {
        let t = self.start_ts;
        let mut w = Vec::new();
        let stamp = |mut cols: Vec<(&'static str, IdbValue)>| {
            cols.extend([
                ("STATUS", IdbValue::Int(1)),
                ("CREATED", IdbValue::Timestamp(t)),
                ("CREATED_TS", IdbValue::Int(t)),
                ("LASTCHANGE", IdbValue::Timestamp(t)),
                ("LASTCHANGE_TS", IdbValue::Int(t)),
            ]);
            cols
        };
        let ins = |table, handle, columns| IdbWrite { table, handle, kind: WriteKind::Insert, columns };
        w.push(ins("GC_TENANT", 1, stamp(vec![("NAME", IdbValue::Text("Environment".into()))])));
        for s in 0..self.settings.sites {
            let site = s + 1;
            w.push(ins(
                "GC_SWITCH",
                site as i64,
                stamp(vec![
                    ("TENANTID", IdbValue::Int(1)),
                    ("NAME", IdbValue::Text(format!("SIP_Switch_Site{site}"))),
                    ("TYPE", IdbValue::Int(1)),
                ]),
            ));
            w.push(ins(
                "GC_ENDPOINT",
                routing_point_dbid(s),
                stamp(vec![
                    ("TENANTID", IdbValue::Int(1)),
                    ("SWITCHID", IdbValue::Int(site as i64)),
                    ("DN", IdbValue::Text(format!("RP_Inbound_Site{site}"))),
                    ("TYPE", IdbValue::Int(dn_type::ROUTING_POINT)),
                ]),
            ));
            for q in 0..self.settings.queues_per_site {
                let name = QUEUE_NAMES[q % QUEUE_NAMES.len()];
                w.push(ins(
                    "GC_ENDPOINT",
                    queue_dbid(s, q),
                    stamp(vec![
                        ("TENANTID", IdbValue::Int(1)),
                        ("SWITCHID", IdbValue::Int(site as i64)),
                        ("DN", IdbValue::Text(format!("Q_{name}_Site{site}"))),
                        ("TYPE", IdbValue::Int(dn_type::ACD_QUEUE)),
                    ]),
                ));
                w.push(ins(
                    "GC_GROUP",
                    queue_dbid(s, q),
                    stamp(vec![
                        ("TENANTID", IdbValue::Int(1)),
                        ("NAME", IdbValue::Text(group_name(s, q))),
                        ("TYPE", IdbValue::Int(1)),
                    ]),
                ));
            }
            for (i, _) in self.sites[s].agents.iter().enumerate() {
                if let Some((handle, q, since)) = self.memberships.get(&(s, i)).copied() {
                    w.push(ins("GCX_GROUP_AGENT", handle, membership_columns(s, i, q, since)));
                }
            }
            // The site's supervisor: a person, not an agent (takes no calls, never logs in).
            let supervisor = supervisor_dbid(s);
            w.push(ins(
                "GC_AGENT",
                supervisor,
                stamp(vec![
                    ("TENANTID", IdbValue::Int(1)),
                    ("USERNAME", IdbValue::Text(format!("supervisor{site}"))),
                    ("EMPLOYEEID", IdbValue::Text(format!("S{site}"))),
                    ("TYPE", IdbValue::Int(person_type::SUPERVISOR)),
                ]),
            ));
            for a in &self.sites[s].agents {
                w.push(ins(
                    "GC_AGENT",
                    a.dbid,
                    stamp(vec![
                        ("TENANTID", IdbValue::Int(1)),
                        ("USERNAME", IdbValue::Text(format!("agent{}", a.dbid))),
                        ("FIRSTNAME", IdbValue::Text(format!("First{}", a.dbid))),
                        ("LASTNAME", IdbValue::Text(format!("Last{}", a.dbid))),
                        ("EMPLOYEEID", IdbValue::Text(format!("E{}", a.dbid))),
                        ("TYPE", IdbValue::Int(person_type::AGENT)),
                    ]),
                ));
                w.push(ins(
                    "GC_PLACE",
                    3000 + a.dbid,
                    stamp(vec![("TENANTID", IdbValue::Int(1)), ("NAME", IdbValue::Text(format!("Place_{}", a.dn)))]),
                ));
                w.push(ins(
                    "GC_ENDPOINT",
                    a.dn_dbid,
                    stamp(vec![
                        ("TENANTID", IdbValue::Int(1)),
                        ("SWITCHID", IdbValue::Int(site as i64)),
                        ("DN", IdbValue::Text(a.dn.clone())),
                        ("TYPE", IdbValue::Int(dn_type::EXTENSION)),
                    ]),
                ));
            }
        }
        w
    }

    /// Simulated time: the latest event handled or instant advanced to, over all sites.
    pub fn now(&self) -> i64 {
        self.sites.iter().map(|s| s.now).max().unwrap_or(self.start_ts)
    }

    /// Simulates every site up to (not including) `until` and returns, per site, the writes its collectors made,
    /// in order. The first call also returns the configuration (in every site's stream).
    pub fn advance_to(&mut self, until: i64) -> Vec<Vec<IdbWrite>> {
        let mut config = if self.config_written { Vec::new() } else { self.configuration_writes() };
        self.config_written = true;
        config.extend(self.group_change_writes(until));
        let mut out = Vec::with_capacity(self.sites.len());
        for site in &mut self.sites {
            site.writes.extend(config.iter().cloned());
            site.run_until(until, &self.settings);
            out.push(std::mem::take(&mut site.writes));
        }
        out
    }

    /// Stops new arrivals at `at`, lets every call and after-call work finish and logs every agent out, so that
    /// the ground truth is complete and every IDB row is final.
    pub fn finish(&mut self, at: i64) -> Vec<Vec<IdbWrite>> {
        let mut first = self.advance_to(at);
        self.changes_until = at;
        for site in &mut self.sites {
            site.arrivals = false;
            for a in 0..site.agents.len() {
                site.schedule(at, Ev::LogoutDue { agent: a });
            }
        }
        let rest = self.advance_to(i64::MAX);
        for (f, r) in first.iter_mut().zip(rest) {
            f.extend(r);
        }
        first
    }
}

impl Site {
    fn schedule(&mut self, at: i64, ev: Ev) {
        self.next_event += 1;
        self.events.push(Reverse((at, self.next_event, ev)));
    }

    fn c(&mut self, call: usize) -> &mut Call {
        self.calls.get_mut(&call).expect("simulator invariant: events of a call fire only while it is live")
    }

    fn session_id_value(&self, id: &str) -> IdbValue {
        IdbValue::LoginSessionId { id: id.to_string(), per_idb: self.per_idb_session_ids }
    }

    fn handle(&mut self) -> i64 {
        self.next_handle += 1;
        self.next_handle
    }

    fn insert(&mut self, table: &'static str, handle: i64, columns: Vec<(&'static str, IdbValue)>) {
        self.writes.push(IdbWrite { table, handle, kind: WriteKind::Insert, columns });
    }

    fn update(&mut self, table: &'static str, handle: i64, columns: Vec<(&'static str, IdbValue)>) {
        self.writes.push(IdbWrite { table, handle, kind: WriteKind::Update, columns });
    }

    fn run_until(&mut self, until: i64, st: &SimSettings) {
        while let Some(Reverse((at, _, _))) = self.events.peek() {
            if *at >= until {
                break;
            }
            let Some(Reverse((at, _, ev))) = self.events.pop() else {
                break;
            };
            self.now = at;
            self.handle_event(ev, st);
        }
        if until != i64::MAX {
            self.now = self.now.max(until);
        }
    }

    fn handle_event(&mut self, ev: Ev, st: &SimSettings) {
        match ev {
            Ev::Arrival => self.arrival(st),
            Ev::Abandon { call, visit } => self.abandon(call, visit),
            Ev::RingEnd { call } => self.ring_end(call, st),
            Ev::HoldStart { call } => self.hold_start(call),
            Ev::HoldEnd { call } => self.hold_end(call),
            Ev::TalkEnd { call } => self.talk_end(call, st),
            Ev::AcwEnd { agent } => self.acw_end(agent, st),
            Ev::BreakStart { agent, gen } => self.break_start(agent, gen, st),
            Ev::BreakEnd { agent } => self.break_end(agent, st),
            Ev::Login { agent } => self.login(agent, st),
            Ev::LogoutDue { agent } => self.logout_due(agent),
        }
    }

    // ----- agents -----

    fn login(&mut self, a: usize, st: &SimSettings) {
        if !self.arrivals {
            return;
        }
        let now = self.now;
        let handle = self.handle();
        let agent = &mut self.agents[a];
        agent.session_count += 1;
        let id = format!("LS-{}-{}-{}", self.index + 1, agent.dbid, agent.session_count);
        self.truth.sessions_started += 1;
        agent.session =
            Some(Session { handle, id: id.clone(), start: now, seq: 0, state: 0, state_start: now, reason: None });
        agent.logout_pending = false;
        let (dbid, dn_dbid, dn) = (agent.dbid, agent.dn_dbid, agent.dn.clone());
        self.insert(
            "G_LOGIN_SESSION",
            handle,
            vec![
                ("LOGINSESSIONID", self.session_id_value(&id)),
                ("AGENTID", IdbValue::Int(dbid)),
                ("PLACEID", IdbValue::Int(3000 + dbid)),
                ("SWITCHID", IdbValue::Int(self.index as i64 + 1)),
                ("STATE", IdbValue::Int(login_state::ACTIVE)),
                ("CREATED", IdbValue::Timestamp(now)),
                ("CREATED_TS", IdbValue::Int(now)),
            ],
        );
        let ep = self.handle();
        self.insert(
            "GX_SESSION_ENDPOINT",
            ep,
            vec![
                ("LOGINSESSIONID", self.session_id_value(&id)),
                ("ENDPOINTID", IdbValue::Int(dn_dbid)),
                ("ENDPOINTDN", IdbValue::Text(dn)),
                ("CREATED", IdbValue::Timestamp(now)),
                ("CREATED_TS", IdbValue::Int(now)),
            ],
        );
        self.set_agent_state(a, agent_state::READY, None, None);
        let logout_at = now + st.session_secs;
        self.schedule(logout_at, Ev::LogoutDue { agent: a });
        self.become_idle(a, st);
    }

    /// Records a state change: closes the previous period in the truth, writes the history (and reason) rows.
    fn set_agent_state(&mut self, a: usize, state: i64, reason: Option<&str>, callid: Option<&str>) {
        let now = self.now;
        let agent = &mut self.agents[a];
        let (dbid, dn_dbid) = (agent.dbid, agent.dn_dbid);
        let Some(session) = agent.session.as_mut() else {
            return;
        };
        if session.seq > 0 {
            self.truth.states.push(TruthStatePeriod {
                session_id: session.id.clone(),
                agent_dbid: dbid,
                state: session.state,
                start_ts: session.state_start,
                end_ts: now,
                reason: session.reason.clone(),
            });
        }
        // ICON writes a reason code when it ends: the not-ready period that had one is over now.
        let ended_reason = session.reason.take().map(|r| (r, session.state_start));
        session.seq += 1;
        session.state = state;
        session.state_start = now;
        session.reason = reason.map(str::to_string);
        let (seq, sid) = (session.seq, session.id.clone());
        if let Some((r, since)) = ended_reason {
            let h = self.handle();
            self.insert(
                "G_AGENT_STATE_RC",
                h,
                vec![
                    ("SESSIONID", self.session_id_value(&sid)),
                    ("ENDPOINTID", IdbValue::Int(dn_dbid)),
                    ("QUEUEID", IdbValue::Int(0)),
                    ("AGENTSTATE", IdbValue::Int(agent_state::NOT_READY)),
                    ("WORKMODE", IdbValue::Int(work_mode::AUX_WORK)),
                    ("HWFLAG", IdbValue::Int(0)),
                    ("KEYNAME", IdbValue::Text("ReasonCode".into())),
                    ("VALUE", IdbValue::Text(r)),
                    ("CREATED", IdbValue::Timestamp(since)),
                    ("CREATED_TS", IdbValue::Int(since)),
                    ("TERMINATED", IdbValue::Timestamp(now)),
                    ("TERMINATED_TS", IdbValue::Int(now)),
                ],
            );
        }
        // After-call work is not-ready time in work mode after-call work (the Genesys agent model).
        let (written_state, mode) = match state {
            agent_state::AFTER_CALL_WORK => (agent_state::NOT_READY, work_mode::AFTER_CALL_WORK),
            agent_state::NOT_READY => (agent_state::NOT_READY, work_mode::AUX_WORK),
            other => (other, work_mode::AUTO_IN),
        };
        let record = AgentRecord { sid: &sid, agent: dbid, endpoint: dn_dbid, seq, at: now };
        self.agent_record(
            record,
            agent_record_type::STATE,
            written_state,
            vec![
                ("WORKMODE", IdbValue::Int(mode)),
                ("CALLID", callid.map_or(IdbValue::Null, |c| IdbValue::Text(c.to_string()))),
            ],
        );
    }

    /// Writes one `G_AGENT_STATE_HISTORY` record of type `kind` with `state` and the `extra` columns.
    fn agent_record(&mut self, r: AgentRecord<'_>, kind: i64, state: i64, extra: Vec<(&'static str, IdbValue)>) {
        let h = self.handle();
        let mut columns = vec![
            ("TYPE", IdbValue::Int(kind)),
            ("LOGINSESSIONID", self.session_id_value(r.sid)),
            ("AGENTID", IdbValue::Int(r.agent)),
            ("ENDPOINTID", IdbValue::Int(r.endpoint)),
            ("QUEUEID", IdbValue::Int(0)),
            ("SEQ", IdbValue::Int(r.seq)),
            ("STATE", IdbValue::Int(state)),
            ("ADDED", IdbValue::Timestamp(r.at)),
            ("ADDED_TS", IdbValue::Int(r.at)),
        ];
        columns.extend(extra);
        self.insert("G_AGENT_STATE_HISTORY", h, columns);
    }

    /// Records that the agent asked to log out while busy: a pending-state record, which opens no state period.
    fn pending_logout(&mut self, a: usize) {
        let now = self.now;
        let agent = &mut self.agents[a];
        let (dbid, dn_dbid) = (agent.dbid, agent.dn_dbid);
        let Some(session) = agent.session.as_mut() else {
            return;
        };
        session.seq += 1;
        let (seq, sid) = (session.seq, session.id.clone());
        let current = match session.state {
            agent_state::AFTER_CALL_WORK => agent_state::NOT_READY,
            other => other,
        };
        let record = AgentRecord { sid: &sid, agent: dbid, endpoint: dn_dbid, seq, at: now };
        let pending = vec![("PENDINGSTATE", IdbValue::Int(agent_state::LOGGED_OUT))];
        self.agent_record(record, agent_record_type::PENDING_STATE, current, pending);
    }

    fn agent_state(&self, a: usize) -> i64 {
        self.agents[a].session.as_ref().map_or(0, |s| s.state)
    }

    /// The agent is ready and free: take a waiting call, or schedule the next break.
    fn become_idle(&mut self, a: usize, st: &SimSettings) {
        self.agents[a].idle_since = self.now;
        if self.agents[a].logout_pending {
            return;
        }
        if let Some(call) = self.waiting.pop_front() {
            self.distribute(call, a);
            return;
        }
        self.agents[a].break_gen += 1;
        let gen = self.agents[a].break_gen;
        let at = self.now + secs(&mut self.rng, st.mean_secs_between_breaks, 1);
        self.schedule(at, Ev::BreakStart { agent: a, gen });
    }

    fn break_start(&mut self, a: usize, gen: u64, st: &SimSettings) {
        if self.agents[a].break_gen != gen || self.agents[a].call.is_some() || self.agent_state(a) != agent_state::READY
        {
            return;
        }
        let reason = REASON_CODES[self.rng.random_range(0..REASON_CODES.len())];
        self.set_agent_state(a, agent_state::NOT_READY, Some(reason), None);
        let at = self.now + secs(&mut self.rng, st.mean_break_secs, 10);
        self.schedule(at, Ev::BreakEnd { agent: a });
    }

    fn break_end(&mut self, a: usize, st: &SimSettings) {
        if self.agent_state(a) != agent_state::NOT_READY {
            return;
        }
        if self.agents[a].logout_pending {
            self.logout(a);
            return;
        }
        self.set_agent_state(a, agent_state::READY, None, None);
        self.become_idle(a, st);
    }

    fn acw_end(&mut self, a: usize, st: &SimSettings) {
        let start = self.agents[a].session.as_ref().map_or(self.now, |s| s.state_start);
        if let Some((idx, callid)) = self.agents[a].acw_call.take() {
            let dbid = self.agents[a].dbid;
            let truth_call = match self.calls.get_mut(&idx) {
                Some(c) => Some(&mut c.truth),
                None => self.truth.calls.get_mut(&callid),
            };
            if let Some(leg) = truth_call.and_then(|c| c.legs.iter_mut().rev().find(|l| l.agent_dbid == dbid)) {
                leg.acw_secs += self.now - start;
                leg.acw_count += 1;
            }
        }
        if self.agents[a].logout_pending {
            self.logout(a);
            return;
        }
        self.set_agent_state(a, agent_state::READY, None, None);
        self.become_idle(a, st);
    }

    fn logout_due(&mut self, a: usize) {
        if self.agents[a].session.is_none() {
            return;
        }
        let state = self.agent_state(a);
        if self.agents[a].call.is_some() || state == agent_state::AFTER_CALL_WORK {
            if !self.agents[a].logout_pending {
                self.pending_logout(a);
            }
            self.agents[a].logout_pending = true;
            return;
        }
        self.logout(a);
    }

    fn logout(&mut self, a: usize) {
        let now = self.now;
        self.set_agent_state(a, agent_state::LOGGED_OUT, None, None);
        let Some(session) = self.agents[a].session.take() else {
            return;
        };
        self.agents[a].break_gen += 1;
        self.agents[a].logout_pending = false;
        self.truth.sessions_ended += 1;
        self.truth.sessions.push(TruthSession {
            session_id: session.id.clone(),
            agent_dbid: self.agents[a].dbid,
            start_ts: session.start,
            end_ts: now,
        });
        self.update(
            "G_LOGIN_SESSION",
            session.handle,
            vec![
                ("STATE", IdbValue::Int(login_state::ENDED)),
                ("TERMINATED", IdbValue::Timestamp(now)),
                ("TERMINATED_TS", IdbValue::Int(now)),
            ],
        );
        self.update(
            "GX_SESSION_ENDPOINT",
            session.handle + 1,
            vec![("TERMINATED", IdbValue::Timestamp(now)), ("TERMINATED_TS", IdbValue::Int(now))],
        );
        if self.arrivals {
            let pause = self.rng.random_range(300..1200);
            self.schedule(now + pause, Ev::Login { agent: a });
        }
    }

    // ----- calls -----

    #[allow(clippy::too_many_arguments)]
    fn new_party(
        &mut self,
        call: usize,
        ptype: i64,
        dn: Option<i64>,
        role: i64,
        state: i64,
        endpoint: Option<(i64, String)>,
        agent: Option<i64>,
    ) -> Party {
        let now = self.now;
        let handle = self.handle();
        let callid = self.c(call).callid.clone();
        let (ep_id, ep_dn) =
            endpoint.map_or((IdbValue::Null, IdbValue::Null), |(i, d)| (IdbValue::Int(i), IdbValue::Text(d)));
        self.insert(
            "G_PARTY",
            handle,
            vec![
                ("PARTYID", IdbValue::AssociationId(handle)),
                ("PARTYGUID", IdbValue::Guid(handle)),
                ("CALLID", IdbValue::Text(callid.clone())),
                ("PARENTPARTYID", IdbValue::Null),
                ("TYPE", IdbValue::Int(ptype)),
                ("ENDPOINTTYPE", dn.map_or(IdbValue::Null, IdbValue::Int)),
                ("PROLE", IdbValue::Int(role)),
                ("STATE", IdbValue::Int(state)),
                ("CCEVENT", IdbValue::Int(cause::NONE)),
                ("ENDPOINTID", ep_id),
                ("ENDPOINTDN", ep_dn),
                // Parties no agent handles carry agent 0, as real IDBs show.
                ("AGENTID", IdbValue::Int(agent.unwrap_or(0))),
                ("CREATED", IdbValue::Timestamp(now)),
                ("CREATED_TS", IdbValue::Int(now)),
            ],
        );
        let mut p = Party { handle, pseq: 0, state };
        self.party_history(call, &mut p, PARTY_CREATED, state, cause::NONE);
        p
    }

    fn party_history(&mut self, call: usize, p: &mut Party, change: i64, state: i64, ccevent: i64) {
        let now = self.now;
        p.pseq += 1;
        let previous = if p.pseq == 1 { IdbValue::Null } else { IdbValue::Int(p.state) };
        p.state = state;
        let h = self.handle();
        let callid = self.c(call).callid.clone();
        self.insert(
            "G_PARTY_HISTORY",
            h,
            vec![
                ("PARTYID", IdbValue::AssociationId(p.handle)),
                ("PSEQ", IdbValue::Int(p.pseq)),
                ("CHANGETYPE", IdbValue::Int(change)),
                ("CCEVENT", IdbValue::Int(ccevent)),
                ("STATE", IdbValue::Int(state)),
                ("PREVSTATE", previous),
                ("CALLID", IdbValue::Text(callid)),
                ("ADDED", IdbValue::Timestamp(now)),
                ("ADDED_TS", IdbValue::Int(now)),
            ],
        );
    }

    fn party_change(&mut self, call: usize, p: &mut Party, state: i64, ccevent: i64) {
        let now = self.now;
        let mut cols = vec![
            ("STATE", IdbValue::Int(state)),
            ("PREVSTATE", IdbValue::Int(p.state)),
            ("CCEVENT", IdbValue::Int(ccevent)),
        ];
        let change = if state == party_state::RELEASED {
            cols.push(("TERMINATED", IdbValue::Timestamp(now)));
            cols.push(("TERMINATED_TS", IdbValue::Int(now)));
            PARTY_TERMINATED
        } else {
            PARTY_STATE_CHANGED
        };
        self.update("G_PARTY", p.handle, cols);
        self.party_history(call, p, change, state, ccevent);
    }

    fn arrival(&mut self, st: &SimSettings) {
        if !self.arrivals {
            return;
        }
        let now = self.now;
        self.next_arrival += exp(&mut self.rng, 3600.0 / st.calls_per_hour.max(0.001));
        let next = (self.next_arrival.floor() as i64).max(now);
        self.schedule(next, Ev::Arrival);
        let idx = self.next_call;
        self.next_call += 1;
        let handle = self.handle();
        let callid = format!("{:04X}{:012X}", self.index + 1, handle);
        let site = self.index + 1;
        let ani = format!("+1555{:07}", self.rng.random_range(0..10_000_000));
        let dnis = format!("RP_Inbound_Site{site}");
        let queue = self.rng.random_range(0..st.queues_per_site.max(1));
        let service = SERVICE_TYPES[self.rng.random_range(0..SERVICE_TYPES.len())];
        let segment = SEGMENTS[self.rng.random_range(0..SEGMENTS.len())];
        self.insert(
            "G_CALL",
            handle,
            vec![
                ("CALLID", IdbValue::Text(callid.clone())),
                ("CONNID", IdbValue::Text(format!("{:016x}", handle))),
                ("IRID", IdbValue::Text(format!("IR-{callid}"))),
                ("PARENTCALLID", IdbValue::Null),
                ("STATE", IdbValue::Int(call_state::ALIVE)),
                ("CALLTYPE", IdbValue::Int(call_type::INBOUND)),
                ("MEDIATYPE", IdbValue::Int(media_type::VOICE)),
                ("SWITCHID", IdbValue::Int(site as i64)),
                ("TENANTID", IdbValue::Int(1)),
                ("CREATED", IdbValue::Timestamp(now)),
                ("CREATED_TS", IdbValue::Int(now)),
            ],
        );
        let ir = self.handle();
        self.insert(
            "G_IR",
            ir,
            vec![
                ("IRID", IdbValue::Text(format!("IR-{callid}"))),
                ("CREATED", IdbValue::Timestamp(now)),
                ("CREATED_TS", IdbValue::Int(now)),
            ],
        );
        let mut user_data = BTreeMap::new();
        user_data.insert("ServiceType".to_string(), service.to_string());
        user_data.insert("CustomerSegment".to_string(), segment.to_string());
        self.calls.insert(
            idx,
            Call {
                handle,
                callid: callid.clone(),
                customer: Party { handle: 0, pseq: 0, state: 0 },
                queue,
                queue_party: None,
                agent_party: None,
                agent: None,
                visit: 0,
                transfers: 0,
                leg_state_since: now,
                truth: TruthCall {
                    callid: callid.clone(),
                    site: self.index,
                    start_ts: now,
                    end_ts: now,
                    ani: ani.clone(),
                    dnis: dnis.clone(),
                    queue_visits: Vec::new(),
                    legs: Vec::new(),
                    user_data: user_data.clone(),
                },
            },
        );
        let customer = self.new_party(
            idx,
            party_type::EXTERNAL,
            None,
            party_role::ORIGINATION,
            party_state::CONNECTED,
            Some((0, ani)),
            None,
        );
        self.c(idx).customer = customer;
        for (k, v) in user_data {
            let h = self.handle();
            self.insert(
                "G_USERDATA_HISTORY",
                h,
                vec![
                    ("CALLID", IdbValue::Text(callid.clone())),
                    ("KEYNAME", IdbValue::Text(k)),
                    ("VALUE", IdbValue::Text(v)),
                    ("ADDED", IdbValue::Timestamp(now)),
                    ("ADDED_TS", IdbValue::Int(now)),
                ],
            );
        }
        self.enqueue(idx, queue, st);
    }

    fn enqueue(&mut self, call: usize, queue: usize, st: &SimSettings) {
        let site = self.index;
        let qdbid = queue_dbid(site, queue);
        let name = QUEUE_NAMES[queue % QUEUE_NAMES.len()];
        let role = if self.c(call).transfers > 0 { party_role::NEW_PARTY } else { party_role::DESTINATION };
        let qp = self.new_party(
            call,
            party_type::INTERNAL,
            Some(dn_type::ACD_QUEUE),
            role,
            party_state::QUEUED,
            Some((qdbid, format!("Q_{name}_Site{}", site + 1))),
            None,
        );
        let now = self.now;
        let c = self.c(call);
        c.queue = queue;
        c.queue_party = Some(qp);
        c.truth.queue_visits.push(TruthQueueVisit { queue_dbid: qdbid, start_ts: now, end_ts: now, abandoned: false });
        c.visit = c.truth.queue_visits.len() - 1;
        let visit = c.visit;
        // Longest-idle ready agent takes it at once; otherwise wait (FIFO) until patience runs out.
        let free = (0..self.agents.len())
            .filter(|&a| {
                let ag = &self.agents[a];
                ag.call.is_none()
                    && !ag.logout_pending
                    && ag.session.as_ref().is_some_and(|s| s.state == agent_state::READY)
            })
            .min_by_key(|&a| (self.agents[a].idle_since, a));
        match free {
            Some(a) => self.distribute(call, a),
            None => {
                self.waiting.push_back(call);
                let patience = secs(&mut self.rng, st.mean_patience_secs, 1);
                self.schedule(now + patience, Ev::Abandon { call, visit });
            }
        }
    }

    fn abandon(&mut self, call: usize, visit: usize) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.visit != visit || c.agent.is_some() || !self.waiting.contains(&call) {
            return;
        }
        self.waiting.retain(|&x| x != call);
        let now = self.now;
        if let Some(mut qp) = self.c(call).queue_party.take() {
            self.party_change(call, &mut qp, party_state::RELEASED, cause::ABANDONED);
        }
        let c = self.c(call);
        if let Some(v) = c.truth.queue_visits.last_mut() {
            v.end_ts = now;
            v.abandoned = true;
        }
        self.end_call(call, cause::ABANDONED);
    }

    fn distribute(&mut self, call: usize, a: usize) {
        let now = self.now;
        if let Some(mut qp) = self.c(call).queue_party.take() {
            self.party_change(call, &mut qp, party_state::RELEASED, cause::DISTRIBUTED);
        }
        if let Some(v) = self.c(call).truth.queue_visits.last_mut() {
            v.end_ts = now;
        }
        self.agents[a].break_gen += 1;
        self.agents[a].call = Some(call);
        let (dbid, dn_dbid, dn) = (self.agents[a].dbid, self.agents[a].dn_dbid, self.agents[a].dn.clone());
        let callid = self.c(call).callid.clone();
        self.set_agent_state(a, agent_state::BUSY, None, Some(&callid));
        let ap = self.new_party(
            call,
            party_type::INTERNAL,
            Some(dn_type::EXTENSION),
            party_role::DESTINATION,
            party_state::ALERTING,
            Some((dn_dbid, dn)),
            Some(dbid),
        );
        let c = self.c(call);
        c.agent = Some(a);
        c.agent_party = Some(ap);
        c.leg_state_since = now;
        c.truth.legs.push(TruthLeg {
            agent_dbid: dbid,
            endpoint_dbid: dn_dbid,
            start_ts: now,
            end_ts: now,
            ring_secs: 0,
            talk_secs: 0,
            hold_count: 0,
            hold_secs: 0,
            acw_secs: 0,
            acw_count: 0,
            result: LegResult::Completed,
        });
        let ring = self.rng.random_range(3..16);
        self.schedule(now + ring, Ev::RingEnd { call });
    }

    fn ring_end(&mut self, call: usize, st: &SimSettings) {
        if !self.calls.contains_key(&call) {
            return;
        }
        let now = self.now;
        let Some(a) = self.c(call).agent else { return };
        let Some(mut ap) = self.c(call).agent_party else {
            return;
        };
        let ring = now - self.c(call).leg_state_since;
        if let Some(l) = self.c(call).truth.legs.last_mut() {
            l.ring_secs = ring;
        }
        if self.rng.random_bool(st.no_answer_probability.clamp(0.0, 1.0)) {
            // Ring no answer: the call goes back to its queue, the agent goes not ready.
            self.party_change(call, &mut ap, party_state::RELEASED, cause::REDIRECTED);
            if let Some(l) = self.c(call).truth.legs.last_mut() {
                l.end_ts = now;
                l.result = LegResult::Redirected;
            }
            self.c(call).agent = None;
            self.c(call).agent_party = None;
            self.agents[a].call = None;
            self.set_agent_state(a, agent_state::NOT_READY, Some("RONA"), None);
            self.schedule(now + 30, Ev::BreakEnd { agent: a });
            let q = self.c(call).queue;
            self.enqueue(call, q, st);
            return;
        }
        self.party_change(call, &mut ap, party_state::CONNECTED, cause::NONE);
        self.c(call).agent_party = Some(ap);
        self.c(call).leg_state_since = now;
        let talk = secs(&mut self.rng, st.mean_talk_secs, 5);
        let mut hold = 0;
        if self.rng.random_bool(st.hold_probability.clamp(0.0, 1.0)) && talk > 10 {
            let at = now + self.rng.random_range(2..talk - 2);
            hold = self.rng.random_range(5..60);
            self.schedule(at, Ev::HoldStart { call });
            self.schedule(at + hold, Ev::HoldEnd { call });
        }
        self.schedule(now + talk + hold, Ev::TalkEnd { call });
    }

    fn hold_start(&mut self, call: usize) {
        if !self.calls.contains_key(&call) {
            return;
        }
        let now = self.now;
        let Some(mut ap) = self.c(call).agent_party else {
            return;
        };
        self.party_change(call, &mut ap, party_state::HELD, cause::NONE);
        let c = self.c(call);
        c.agent_party = Some(ap);
        if let Some(l) = c.truth.legs.last_mut() {
            l.talk_secs += now - c.leg_state_since;
            l.hold_count += 1;
        }
        c.leg_state_since = now;
    }

    fn hold_end(&mut self, call: usize) {
        if !self.calls.contains_key(&call) {
            return;
        }
        let now = self.now;
        let Some(mut ap) = self.c(call).agent_party else {
            return;
        };
        self.party_change(call, &mut ap, party_state::CONNECTED, cause::NONE);
        let c = self.c(call);
        c.agent_party = Some(ap);
        if let Some(l) = c.truth.legs.last_mut() {
            l.hold_secs += now - c.leg_state_since;
        }
        c.leg_state_since = now;
    }

    fn talk_end(&mut self, call: usize, st: &SimSettings) {
        let now = self.now;
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let (Some(a), Some(mut ap)) = (c.agent, c.agent_party) else {
            return;
        };
        if let Some(l) = c.truth.legs.last_mut() {
            l.talk_secs += now - c.leg_state_since;
            l.end_ts = now;
        }
        let transfer =
            st.queues_per_site > 1 && c.transfers < 2 && self.rng.random_bool(st.transfer_probability.clamp(0.0, 1.0));
        let callid = c.callid.clone();
        let end_cause = if transfer { cause::TRANSFERRED } else { cause::COMPLETED };
        self.party_change(call, &mut ap, party_state::RELEASED, end_cause);
        if let Some(c) = self.calls.get_mut(&call) {
            c.agent = None;
            c.agent_party = None;
            if transfer {
                c.transfers += 1;
                if let Some(l) = c.truth.legs.last_mut() {
                    l.result = LegResult::Transferred;
                }
            }
        }
        // The agent: after-call work linked to this call, or straight back to ready.
        self.agents[a].call = None;
        if self.rng.random_bool(st.acw_probability.clamp(0.0, 1.0)) {
            self.set_agent_state(a, agent_state::AFTER_CALL_WORK, None, Some(&callid));
            self.agents[a].acw_call = Some((call, callid));
            let at = now + secs(&mut self.rng, st.mean_acw_secs, 1);
            self.schedule(at, Ev::AcwEnd { agent: a });
        } else if self.agents[a].logout_pending {
            self.logout(a);
        } else {
            self.set_agent_state(a, agent_state::READY, None, None);
            self.become_idle(a, st);
        }
        if transfer {
            let current = self.calls.get(&call).map_or(0, |c| c.queue);
            let n = st.queues_per_site.max(1);
            let target = (current + 1 + self.rng.random_range(0..n - 1)) % n;
            self.enqueue(call, target, st);
        } else {
            self.end_call(call, cause::COMPLETED);
        }
    }

    fn end_call(&mut self, call: usize, customer_cause: i64) {
        let now = self.now;
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let mut customer = c.customer;
        let handle = c.handle;
        self.party_change(call, &mut customer, party_state::RELEASED, customer_cause);
        self.update(
            "G_CALL",
            handle,
            vec![
                ("STATE", IdbValue::Int(call_state::TERMINATED)),
                ("TERMINATED", IdbValue::Timestamp(now)),
                ("TERMINATED_TS", IdbValue::Int(now)),
            ],
        );
        self.update(
            "G_IR",
            handle + 1,
            vec![("TERMINATED", IdbValue::Timestamp(now)), ("TERMINATED_TS", IdbValue::Int(now))],
        );
        if let Some(mut c) = self.calls.remove(&call) {
            c.truth.end_ts = now;
            if self.record_truth {
                self.truth.calls.insert(c.callid.clone(), c.truth);
            }
        }
    }
}
