//! The IDB contract: which Interaction Concentrator tables and columns ccmart reads, with their types and the
//! value domains it accepts. `data/idb/icon_idb.sql` is the DDL of the same contract and `docs/idb-contract.md`
//! explains it; a test applies the DDL to a real PostgreSQL and checks every column named here exists.

/// How a column's text value (every column is read as text) must parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// A 64-bit integer (ids, `*_TS` epoch seconds, enums, counters).
    Int,
    /// Free text (GUIDs, DNs, names, attached-data values).
    Text,
}

/// One column ccmart reads from an IDB table.
#[derive(Debug, Clone, Copy)]
pub struct ColumnSpec {
    /// Column name exactly as ICON writes it.
    pub name: &'static str,
    /// Expected type; a value that does not parse quarantines the row.
    pub ty: ColumnType,
    /// A null here quarantines the row (keys and facts ccmart cannot do without).
    pub required: bool,
    /// For enumerations: the accepted codes. Anything else quarantines the row.
    pub domain: Option<&'static [i64]>,
    /// The IDB may lack this column (or hold it with another type): ccmart then reads it as NULL and the mart
    /// columns it feeds stay NULL (docs/idb-contract.md lists them). A column that is not optional must exist
    /// with its type, or the table is not extracted (see `schema_check`). Unrelated to `required`, which is about
    /// NULL values in a column that exists.
    pub optional: bool,
}

impl ColumnSpec {
    /// The same column, marked as one the IDB may lack.
    pub const fn optional(self) -> Self {
        ColumnSpec { optional: true, ..self }
    }
}

/// How rows of a table are grouped for merging and transformation: the unit that is taken whole from one IDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    /// Rows belong to the interaction named by this column (`CALLID`).
    Interaction(&'static str),
    /// Rows belong to the agent login session named by this column (`LOGINSESSIONID`).
    LoginSession(&'static str),
    /// Configuration rows: one group per table, merged by configuration DBID.
    Configuration,
    /// Data source session control: when each collector was connected to its data source and how far its IDB
    /// has progressed. Never transformed; the merge reads it to decide which IDB is complete for a time slice.
    SessionControl,
}

/// One IDB table ccmart extracts.
#[derive(Debug, Clone, Copy)]
pub struct TableSpec {
    /// Table name exactly as ICON creates it.
    pub name: &'static str,
    /// The columns read, in the order they are staged. The first is always `ID`, the row's per-IDB primary key.
    pub columns: &'static [ColumnSpec],
    /// Which merge/transform unit the rows belong to.
    pub grouping: Grouping,
}

impl TableSpec {
    /// Position of `name` among the staged columns.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

const fn int(name: &'static str) -> ColumnSpec {
    ColumnSpec { name, ty: ColumnType::Int, required: false, domain: None, optional: false }
}
const fn int_req(name: &'static str) -> ColumnSpec {
    ColumnSpec { name, ty: ColumnType::Int, required: true, domain: None, optional: false }
}
const fn text(name: &'static str) -> ColumnSpec {
    ColumnSpec { name, ty: ColumnType::Text, required: false, domain: None, optional: false }
}
const fn text_req(name: &'static str) -> ColumnSpec {
    ColumnSpec { name, ty: ColumnType::Text, required: true, domain: None, optional: false }
}
const fn enumeration(name: &'static str, domain: &'static [i64]) -> ColumnSpec {
    ColumnSpec { name, ty: ColumnType::Int, required: true, domain: Some(domain), optional: false }
}

/// Codes of `G_CALL.STATE`.
pub mod call_state {
    /// The interaction is still in progress.
    pub const ALIVE: i64 = 1;
    /// The interaction has ended; `TERMINATED_TS` is set.
    pub const TERMINATED: i64 = 2;
    /// Accepted codes.
    pub const ALL: &[i64] = &[ALIVE, TERMINATED];
}

/// Codes of `G_CALL.CALLTYPE`.
pub mod call_type {
    /// Between two internal parties.
    pub const INTERNAL: i64 = 1;
    /// From a customer into the contact center.
    pub const INBOUND: i64 = 2;
    /// From the contact center to a customer.
    pub const OUTBOUND: i64 = 3;
    /// A consultation call.
    pub const CONSULT: i64 = 4;
    /// Accepted codes.
    pub const ALL: &[i64] = &[INTERNAL, INBOUND, OUTBOUND, CONSULT];
    /// Name used in the mart's `INTERACTION_TYPE` columns.
    pub fn name(code: i64) -> &'static str {
        match code {
            INTERNAL => "Internal",
            INBOUND => "Inbound",
            OUTBOUND => "Outbound",
            _ => "Consult",
        }
    }
}

/// Codes of `G_CALL.MEDIATYPE`.
pub mod media_type {
    /// Voice call (SIP Server).
    pub const VOICE: i64 = 1;
    /// E-mail (Interaction Server).
    pub const EMAIL: i64 = 2;
    /// Chat (Interaction Server).
    pub const CHAT: i64 = 3;
    /// Accepted codes.
    pub const ALL: &[i64] = &[VOICE, EMAIL, CHAT];
    /// Name used in the mart's `MEDIA_TYPE` columns.
    pub fn name(code: i64) -> &'static str {
        match code {
            VOICE => "Voice",
            EMAIL => "Email",
            _ => "Chat",
        }
    }
}

/// Codes of `G_PARTY.TYPE`.
pub mod party_type {
    /// A party outside the switch (the customer).
    pub const EXTERNAL: i64 = 1;
    /// An agent's extension.
    pub const AGENT_DN: i64 = 2;
    /// An ACD queue.
    pub const ACD_QUEUE: i64 = 3;
    /// A routing point.
    pub const ROUTING_POINT: i64 = 4;
    /// Accepted codes.
    pub const ALL: &[i64] = &[EXTERNAL, AGENT_DN, ACD_QUEUE, ROUTING_POINT];
}

/// Codes of `G_PARTY.PROLE`.
pub mod party_role {
    /// The party that started the call.
    pub const ORIGINATOR: i64 = 1;
    /// The party the call was delivered to.
    pub const DESTINATION: i64 = 2;
    /// The party a call was transferred to.
    pub const TRANSFER_DESTINATION: i64 = 3;
    /// A conference member.
    pub const CONFERENCE_MEMBER: i64 = 4;
    /// Accepted codes.
    pub const ALL: &[i64] = &[ORIGINATOR, DESTINATION, TRANSFER_DESTINATION, CONFERENCE_MEMBER];
}

/// Codes of `G_PARTY.STATE` and `G_PARTY_HISTORY.STATE`.
pub mod party_state {
    /// Dialing out.
    pub const DIALING: i64 = 1;
    /// Waiting in a queue or at a routing point.
    pub const QUEUED: i64 = 2;
    /// Ringing at an agent's extension.
    pub const ALERTING: i64 = 3;
    /// Connected (talking).
    pub const CONNECTED: i64 = 4;
    /// On hold.
    pub const HELD: i64 = 5;
    /// Gone from the call.
    pub const RELEASED: i64 = 6;
    /// Accepted codes.
    pub const ALL: &[i64] = &[DIALING, QUEUED, ALERTING, CONNECTED, HELD, RELEASED];
}

/// Codes of `G_PARTY.CCEVENT` / `G_PARTY_HISTORY.CCEVENT`: why a party left the call.
pub mod party_end_cause {
    /// Not ended yet.
    pub const NONE: i64 = 0;
    /// Normal release after being connected.
    pub const COMPLETED: i64 = 1;
    /// The caller hung up before being connected here.
    pub const ABANDONED: i64 = 2;
    /// The party transferred the call onwards.
    pub const TRANSFERRED: i64 = 3;
    /// Rang without answer and was redirected elsewhere.
    pub const REDIRECTED: i64 = 4;
    /// A queue or routing point distributed the call to an agent.
    pub const DISTRIBUTED: i64 = 5;
    /// Cleared by the switch without a normal event (stuck party closed by timeout).
    pub const CLEARED: i64 = 6;
    /// Accepted codes.
    pub const ALL: &[i64] = &[NONE, COMPLETED, ABANDONED, TRANSFERRED, REDIRECTED, DISTRIBUTED, CLEARED];
}

/// Codes of `G_AGENT_STATE_HISTORY.STATE`.
pub mod agent_state {
    /// Ready for calls.
    pub const READY: i64 = 1;
    /// Not ready (with an optional reason code in `G_AGENT_STATE_RC`).
    pub const NOT_READY: i64 = 2;
    /// After-call work, linked to the call by `CALLID`.
    pub const AFTER_CALL_WORK: i64 = 3;
    /// Busy on a call.
    pub const BUSY: i64 = 4;
    /// Logged out (closes the session's last period).
    pub const LOGGED_OUT: i64 = 5;
    /// Accepted codes.
    pub const ALL: &[i64] = &[READY, NOT_READY, AFTER_CALL_WORK, BUSY, LOGGED_OUT];
    /// Name used in the mart (`RESOURCE_STATE`).
    pub fn name(code: i64) -> &'static str {
        match code {
            READY => "Ready",
            NOT_READY => "NotReady",
            AFTER_CALL_WORK => "AfterCallWork",
            BUSY => "Busy",
            _ => "LoggedOut",
        }
    }
}

/// Codes of `G_LOGIN_SESSION.STATE`.
pub mod login_state {
    /// Agent is logged in.
    pub const ACTIVE: i64 = 1;
    /// Agent logged out; `TERMINATED_TS` is set.
    pub const ENDED: i64 = 2;
    /// Accepted codes.
    pub const ALL: &[i64] = &[ACTIVE, ENDED];
}

/// Codes of `GC_ENDPOINT.TYPE`.
pub mod endpoint_type {
    /// An agent extension.
    pub const EXTENSION: i64 = 1;
    /// An ACD queue.
    pub const ACD_QUEUE: i64 = 2;
    /// A routing point.
    pub const ROUTING_POINT: i64 = 3;
    /// A virtual queue.
    pub const VIRTUAL_QUEUE: i64 = 4;
    /// Accepted codes.
    pub const ALL: &[i64] = &[EXTENSION, ACD_QUEUE, ROUTING_POINT, VIRTUAL_QUEUE];
}

/// `G_CALL`: the latest state of one interaction.
pub const G_CALL: TableSpec = TableSpec {
    name: "G_CALL",
    columns: &[
        int_req("ID"),
        text_req("CALLID"),
        text("CONNID").optional(),
        text("IRID").optional(),
        text("PARENTCALLID").optional(),
        enumeration("STATE", call_state::ALL),
        enumeration("CALLTYPE", call_type::ALL),
        enumeration("MEDIATYPE", media_type::ALL),
        int("SWITCHID").optional(),
        int("TENANTID").optional(),
        int_req("CREATED_TS"),
        int("TERMINATED_TS"),
        int("GSYS_DOMAIN").optional(),
        int_req("GSYS_SEQ"),
        int("GSYS_USEQ"),
    ],
    grouping: Grouping::Interaction("CALLID"),
};

/// `G_PARTY`: one participant endpoint of an interaction.
pub const G_PARTY: TableSpec = TableSpec {
    name: "G_PARTY",
    columns: &[
        int_req("ID"),
        text("PARTYGUID").optional(),
        text_req("CALLID"),
        int("PARENTPARTYID").optional(),
        enumeration("TYPE", party_type::ALL),
        enumeration("PROLE", party_role::ALL),
        enumeration("STATE", party_state::ALL),
        enumeration("CCEVENT", party_end_cause::ALL),
        int("ENDPOINTID"),
        text("ENDPOINTDN").optional(),
        int("AGENTID"),
        int_req("CREATED_TS"),
        int("TERMINATED_TS"),
        int("GSYS_DOMAIN").optional(),
        int_req("GSYS_SEQ"),
        int("GSYS_USEQ"),
    ],
    grouping: Grouping::Interaction("CALLID"),
};

/// `G_PARTY_HISTORY`: every state transition of every party.
pub const G_PARTY_HISTORY: TableSpec = TableSpec {
    name: "G_PARTY_HISTORY",
    columns: &[
        int_req("ID"),
        int_req("PARTYID"),
        text_req("CALLID"),
        int_req("PSEQ"),
        enumeration("STATE", party_state::ALL),
        enumeration("CCEVENT", party_end_cause::ALL),
        int_req("CHANGED_TS"),
        int("GSYS_DOMAIN").optional(),
        int_req("GSYS_SEQ"),
        int("GSYS_USEQ"),
    ],
    grouping: Grouping::Interaction("CALLID"),
};

/// `G_USERDATA_HISTORY`: attached-data key/value changes.
pub const G_USERDATA_HISTORY: TableSpec = TableSpec {
    name: "G_USERDATA_HISTORY",
    columns: &[
        int_req("ID"),
        text_req("CALLID"),
        text_req("KEYNAME"),
        text("VALUE"),
        int_req("ADDED_TS"),
        int("GSYS_DOMAIN").optional(),
        int_req("GSYS_SEQ"),
        int("GSYS_USEQ"),
    ],
    grouping: Grouping::Interaction("CALLID"),
};

/// `G_LOGIN_SESSION`: one agent login session.
pub const G_LOGIN_SESSION: TableSpec = TableSpec {
    name: "G_LOGIN_SESSION",
    columns: &[
        int_req("ID"),
        text_req("LOGINSESSIONID"),
        int_req("AGENTID"),
        int("PLACEID").optional(),
        int("SWITCHID").optional(),
        enumeration("STATE", login_state::ALL),
        int_req("CREATED_TS"),
        int("TERMINATED_TS"),
        int("GSYS_DOMAIN").optional(),
        int_req("GSYS_SEQ"),
        int("GSYS_USEQ"),
    ],
    grouping: Grouping::LoginSession("LOGINSESSIONID"),
};

/// `G_AGENT_STATE_HISTORY`: agent state changes, numbered by `SEQ` within a login session.
pub const G_AGENT_STATE_HISTORY: TableSpec = TableSpec {
    name: "G_AGENT_STATE_HISTORY",
    columns: &[
        int_req("ID"),
        text_req("LOGINSESSIONID"),
        int_req("AGENTID"),
        int("ENDPOINTID").optional(),
        int_req("SEQ"),
        enumeration("STATE", agent_state::ALL),
        int("WORKMODE").optional(),
        text("CALLID"),
        int_req("ADDED_TS"),
        int("GSYS_DOMAIN").optional(),
        int_req("GSYS_SEQ"),
        int("GSYS_USEQ"),
    ],
    grouping: Grouping::LoginSession("LOGINSESSIONID"),
};

/// `G_AGENT_STATE_RC`: the reason code of a not-ready state (`SEQ` of the state it explains).
pub const G_AGENT_STATE_RC: TableSpec = TableSpec {
    name: "G_AGENT_STATE_RC",
    columns: &[
        int_req("ID"),
        text_req("LOGINSESSIONID"),
        int_req("AGENTID"),
        int_req("SEQ"),
        text_req("REASONCODE"),
        int_req("ADDED_TS"),
        int("GSYS_DOMAIN").optional(),
        int_req("GSYS_SEQ"),
        int("GSYS_USEQ"),
    ],
    grouping: Grouping::LoginSession("LOGINSESSIONID"),
};

/// `GC_AGENT`: agents (configuration DBID in `ID`, the same in every IDB).
pub const GC_AGENT: TableSpec = TableSpec {
    name: "GC_AGENT",
    columns: &[
        int_req("ID"),
        int("TENANTID").optional(),
        text_req("USERNAME"),
        text("FIRSTNAME").optional(),
        text("LASTNAME").optional(),
        text("EMPLOYEEID").optional(),
        int("STATUS").optional(),
        int("LASTCHANGE_TS").optional(),
        int("GSYS_DOMAIN").optional(),
        int_req("GSYS_SEQ"),
        int("GSYS_USEQ"),
    ],
    grouping: Grouping::Configuration,
};

/// `GC_ENDPOINT`: DNs — extensions, ACD queues, routing points, virtual queues.
pub const GC_ENDPOINT: TableSpec = TableSpec {
    name: "GC_ENDPOINT",
    columns: &[
        int_req("ID"),
        int("TENANTID").optional(),
        int("SWITCHID").optional(),
        text_req("DN"),
        enumeration("TYPE", endpoint_type::ALL),
        int("STATUS").optional(),
        int("LASTCHANGE_TS").optional(),
        int("GSYS_DOMAIN").optional(),
        int_req("GSYS_SEQ"),
        int("GSYS_USEQ"),
    ],
    grouping: Grouping::Configuration,
};

/// `GC_GROUP`: agent groups (configuration DBID in `ID`), e.g. the team that staffs a queue.
pub const GC_GROUP: TableSpec = TableSpec {
    name: "GC_GROUP",
    columns: &[
        int_req("ID"),
        int("TENANTID").optional(),
        text_req("NAME"),
        int("GROUPTYPE").optional(),
        int("STATUS").optional(),
        int("LASTCHANGE_TS").optional(),
        int("GSYS_DOMAIN").optional(),
        int_req("GSYS_SEQ"),
        int("GSYS_USEQ"),
    ],
    grouping: Grouping::Configuration,
};

/// `GCX_GROUP_AGENT`: which agent belongs to which group since when. A membership that ends is not deleted: its
/// row gets `DELETED_TS` (and a newer `LASTCHANGE_TS`), and the new membership is a new row, so the IDB keeps the
/// history that reports by group need.
pub const GCX_GROUP_AGENT: TableSpec = TableSpec {
    name: "GCX_GROUP_AGENT",
    columns: &[
        int_req("ID"),
        int_req("GROUPID"),
        int_req("AGENTID"),
        int_req("CREATED_TS"),
        int("DELETED_TS"),
        int("STATUS").optional(),
        int("LASTCHANGE_TS").optional(),
        int("GSYS_DOMAIN").optional(),
        int_req("GSYS_SEQ"),
        int("GSYS_USEQ"),
    ],
    grouping: Grouping::Configuration,
};

/// Columns shared by both session-control tables.
const SESSION_CONTROL_COLUMNS: &[ColumnSpec] = &[
    int_req("DSS_ID"),
    int_req("ICON_DBID"),
    int("DS_DBID").optional(),
    int_req("DSCONN_STIME"),
    int("DSCONN_TYPE").optional(),
    int("ICON_ETIME"),
    int("DSCONN_ETIME"),
    int("LEVENT_ITIME"),
    int("GSYS_DOMAIN").optional(),
    int_req("GSYS_SEQ"),
    int("GSYS_USEQ"),
];

const fn session_control(name: &'static str) -> TableSpec {
    TableSpec { name, columns: SESSION_CONTROL_COLUMNS, grouping: Grouping::SessionControl }
}

/// `G_DSS_GCC_PROVIDER`: one row per connection of a collector (role `gcc`) to its data source. `DSCONN_STIME` /
/// `DSCONN_ETIME` bound the connection (epoch seconds; `DSCONN_ETIME` null while connected), `ICON_ETIME` is set
/// when the collector shut down cleanly, and `LEVENT_ITIME` is the collector's heartbeat: every row of the IDB
/// written for events up to that time has been committed before it.
pub const G_DSS_GCC_PROVIDER: TableSpec = session_control("G_DSS_GCC_PROVIDER");

/// `G_DSS_GLS_PROVIDER`: the same for role `gls` (agent login sessions and states).
pub const G_DSS_GLS_PROVIDER: TableSpec = session_control("G_DSS_GLS_PROVIDER");

/// Session-control tables, extracted before and committed after the data tables of an IDB (see `extract`).
pub const SESSION_CONTROL_TABLES: &[TableSpec] = &[G_DSS_GCC_PROVIDER, G_DSS_GLS_PROVIDER];

/// Every table ccmart extracts, in extraction order (configuration first, so facts find their resources;
/// session control last, see [`SESSION_CONTROL_TABLES`]).
pub const EXTRACTED_TABLES: &[TableSpec] = &[
    GC_AGENT,
    GC_ENDPOINT,
    GC_GROUP,
    GCX_GROUP_AGENT,
    G_LOGIN_SESSION,
    G_AGENT_STATE_HISTORY,
    G_AGENT_STATE_RC,
    G_CALL,
    G_PARTY,
    G_PARTY_HISTORY,
    G_USERDATA_HISTORY,
    G_DSS_GCC_PROVIDER,
    G_DSS_GLS_PROVIDER,
];

/// Look up an extracted table by name.
pub fn table(name: &str) -> Option<&'static TableSpec> {
    EXTRACTED_TABLES.iter().find(|t| t.name.eq_ignore_ascii_case(name))
}
