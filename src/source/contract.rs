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
    /// An SQL `timestamp` (ICON writes UTC), staged as epoch seconds. ICON's operational and configuration tables
    /// carry a `*_TS` integer next to each timestamp, and ccmart reads that; the session-control tables
    /// (`G_DSS_*`) have timestamps only.
    Timestamp,
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
    /// Where the IDB lacks this column: an SQL expression over the table's other columns (and other tables) that
    /// ccmart reads in its place, so the table is still extracted (docs/idb-contract.md says which).
    pub derived: Option<&'static str>,
}

impl ColumnSpec {
    /// The same column, with a null value quarantining the row.
    pub const fn required(self) -> Self {
        ColumnSpec { required: true, ..self }
    }

    /// The same column, read through `expression` where the IDB lacks it.
    pub const fn derived_from(self, expression: &'static str) -> Self {
        ColumnSpec { derived: Some(expression), ..self }
    }

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
    /// The columns read, in the order they are staged. The first is always the row's per-IDB primary key (`ID`,
    /// `PHID` in `G_PARTY_HISTORY`, `DSS_ID` in session control).
    pub columns: &'static [ColumnSpec],
    /// Which merge/transform unit the rows belong to.
    pub grouping: Grouping,
}

impl TableSpec {
    /// Position of `name` among the staged columns.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Position of `name`, a column this table's contract has: code that reads a contract column by name uses
    /// this, so a misspelt or removed name fails at once (in every test that reads it) instead of reading another
    /// column or nothing. Use [`Self::column_index`] where the column may legitimately be absent.
    pub fn index(&self, name: &str) -> usize {
        match self.column_index(name) {
            Some(i) => i,
            None => panic!("contract table {} has no column {name}", self.name),
        }
    }
}

const fn int(name: &'static str) -> ColumnSpec {
    ColumnSpec { name, ty: ColumnType::Int, required: false, domain: None, optional: false, derived: None }
}
const fn int_req(name: &'static str) -> ColumnSpec {
    ColumnSpec { name, ty: ColumnType::Int, required: true, domain: None, optional: false, derived: None }
}
const fn text(name: &'static str) -> ColumnSpec {
    ColumnSpec { name, ty: ColumnType::Text, required: false, domain: None, optional: false, derived: None }
}
const fn text_req(name: &'static str) -> ColumnSpec {
    ColumnSpec { name, ty: ColumnType::Text, required: true, domain: None, optional: false, derived: None }
}
const fn timestamp(name: &'static str) -> ColumnSpec {
    ColumnSpec { name, ty: ColumnType::Timestamp, required: false, domain: None, optional: false, derived: None }
}
const fn enumeration(name: &'static str, domain: &'static [i64]) -> ColumnSpec {
    ColumnSpec { name, ty: ColumnType::Int, required: true, domain: Some(domain), optional: false, derived: None }
}

/// Codes of `G_CALL.STATE`. **ccmart's assumption** (the vendor's dictionary values were not available): ccmart
/// writes them in the simulator but never decides anything by them — an interaction is closed when
/// `TERMINATED_TS` is set.
pub mod call_state {
    /// The interaction is still in progress.
    pub const ALIVE: i64 = 1;
    /// The interaction has ended; `TERMINATED_TS` is set.
    pub const TERMINATED: i64 = 2;
}

/// Codes of `G_CALL.CALLTYPE`: the T-Library call type (`TCallType`). Public queries against real IDBs use
/// 2 for inbound and 3 for outbound; the rest follows the T-Library numbering (docs/idb-contract.md).
pub mod call_type {
    /// Not known to the switch (a real value: it is not quarantined).
    pub const UNKNOWN: i64 = 0;
    /// Between two internal parties.
    pub const INTERNAL: i64 = 1;
    /// From a customer into the contact center.
    pub const INBOUND: i64 = 2;
    /// From the contact center to a customer.
    pub const OUTBOUND: i64 = 3;
    /// A consultation call.
    pub const CONSULT: i64 = 4;
    /// Accepted codes.
    pub const ALL: &[i64] = &[UNKNOWN, INTERNAL, INBOUND, OUTBOUND, CONSULT];
    /// Name used in the mart's `INTERACTION_TYPE` columns.
    pub fn name(code: i64) -> &'static str {
        match code {
            INTERNAL => "Internal",
            INBOUND => "Inbound",
            OUTBOUND => "Outbound",
            CONSULT => "Consult",
            _ => "Unknown",
        }
    }
}

/// Codes of `G_CALL.MEDIATYPE`: the T-Library media type (`TMediaType`), which ICON is taken to store
/// (docs/idb-contract.md: an inference). Any code is accepted: sites define their own media types (100 and up),
/// which the mart names `Other`.
pub mod media_type {
    /// Voice call (SIP Server, T-Server).
    pub const VOICE: i64 = 0;
    /// Voice over IP.
    pub const VOIP: i64 = 1;
    /// E-mail (Interaction Server).
    pub const EMAIL: i64 = 2;
    /// Chat (Interaction Server).
    pub const CHAT: i64 = 5;
    /// Codes with a name of their own in the mart, in the T-Library's order.
    pub const NAMED: &[(i64, &str)] = &[
        (VOICE, "Voice"),
        (VOIP, "VoIP"),
        (EMAIL, "Email"),
        (3, "VoiceMail"),
        (4, "SMail"),
        (CHAT, "Chat"),
        (6, "Video"),
        (7, "Cobrowsing"),
        (8, "Whiteboard"),
        (9, "AppSharing"),
        (10, "WebForm"),
        (11, "WorkItem"),
    ];
    /// Name of any other code.
    pub const OTHER: &str = "Other";
    /// Name used in the mart's `MEDIA_TYPE` columns.
    pub fn name(code: i64) -> &'static str {
        NAMED.iter().find(|(c, _)| *c == code).map_or(OTHER, |(_, n)| n)
    }
}

/// Codes of `G_PARTY.TYPE` (the vendor's dictionary 9, verified). Whether an internal party is an agent's
/// extension, a queue or a routing point is not in this column: it is the DN's configuration type
/// ([`dn_type`], `G_PARTY.ENDPOINTTYPE` / `GC_ENDPOINT.TYPE`).
pub mod party_type {
    /// Unknown.
    pub const UNKNOWN: i64 = 0;
    /// A device defined in the switch configuration: an extension, an ACD queue, a routing point, ...
    pub const INTERNAL: i64 = 1;
    /// A party outside the switch (the customer).
    pub const EXTERNAL: i64 = 2;
    /// Multimedia: an agent's place.
    pub const MM_PLACE: i64 = 3;
    /// Multimedia: an interaction queue.
    pub const MM_INTERACTION_QUEUE: i64 = 4;
    /// Multimedia: an interaction workbin.
    pub const MM_WORKBIN: i64 = 5;
    /// Multimedia: a routing strategy.
    pub const MM_ROUTING_STRATEGY: i64 = 6;
    /// Accepted codes.
    pub const ALL: &[i64] =
        &[UNKNOWN, INTERNAL, EXTERNAL, MM_PLACE, MM_INTERACTION_QUEUE, MM_WORKBIN, MM_ROUTING_STRATEGY];
}

/// The Configuration Server DN type (`CfgDNType`) of `GC_ENDPOINT.TYPE` and `G_PARTY.ENDPOINTTYPE`: what decides
/// whether a party is a handling resource (an agent's device) or a mediation resource (queue, routing point).
pub mod dn_type {
    /// An agent's extension.
    pub const EXTENSION: i64 = 1;
    /// An ACD position (an agent's device on an ACD switch).
    pub const ACD_POSITION: i64 = 2;
    /// An ACD queue.
    pub const ACD_QUEUE: i64 = 3;
    /// A routing point.
    pub const ROUTING_POINT: i64 = 4;
    /// A virtual queue.
    pub const VIRTUAL_QUEUE: i64 = 5;
    /// A virtual routing point.
    pub const VIRTUAL_ROUTING_POINT: i64 = 6;
    /// An external routing point.
    pub const EXTERNAL_ROUTING_POINT: i64 = 19;
    /// A routing queue (both a routing point and a queue).
    pub const ROUTING_QUEUE: i64 = 22;

    /// What a DN of this type is to the mart.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum ResourceRole {
        /// An agent's device: the party handles the interaction.
        Handling,
        /// A queue or routing point: the party mediates (the interaction waits there).
        Mediation,
    }

    /// The role of a DN type; `None` for types that are neither (voice mail, fax, ...).
    pub fn role(code: i64) -> Option<ResourceRole> {
        match code {
            EXTENSION | ACD_POSITION => Some(ResourceRole::Handling),
            ACD_QUEUE
            | ROUTING_POINT
            | VIRTUAL_QUEUE
            | VIRTUAL_ROUTING_POINT
            | EXTERNAL_ROUTING_POINT
            | ROUTING_QUEUE => Some(ResourceRole::Mediation),
            _ => None,
        }
    }

    /// Name used in the mart's `RESOURCE_.resource_subtype`.
    pub fn name(code: i64) -> &'static str {
        match code {
            EXTENSION => "Extension",
            ACD_POSITION => "ACDPosition",
            ACD_QUEUE => "Queue",
            ROUTING_POINT => "RoutingPoint",
            VIRTUAL_QUEUE => "VirtualQueue",
            VIRTUAL_ROUTING_POINT => "VirtualRoutingPoint",
            EXTERNAL_ROUTING_POINT => "ExternalRoutingPoint",
            ROUTING_QUEUE => "RoutingQueue",
            _ => "Other",
        }
    }
}

/// Codes of `G_PARTY.PROLE` (the vendor's dictionary 10), taken to follow the T-Library party role
/// (docs/idb-contract.md: an inference). ccmart does not decide anything by it.
pub mod party_role {
    /// Unknown.
    pub const UNKNOWN: i64 = 0;
    /// The party that started the call.
    pub const ORIGINATION: i64 = 1;
    /// The party the call was delivered to.
    pub const DESTINATION: i64 = 2;
    /// A conference member.
    pub const CONFERENCE_MEMBER: i64 = 3;
    /// A party added to the call (a transfer or conference target).
    pub const NEW_PARTY: i64 = 4;
    /// The highest code the T-Library defines (observer).
    pub const OBSERVER: i64 = 10;
    /// Accepted codes: the T-Library's 0–10.
    pub const ALL: &[i64] = &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
}

/// Codes of `G_PARTY.STATE` and `G_PARTY_HISTORY.STATE` (the vendor's dictionary 8). **ccmart's assumption**: the
/// dictionary values were not available; a site checks them in its `G_DICTIONARY` (docs/idb-contract.md).
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

/// Codes the simulator writes into `G_PARTY.CCEVENT` / `G_PARTY_HISTORY.CCEVENT`: why a party left the call. ICON
/// documents the column as the call-control event of the change (in `G_PARTY`, of the party's termination), with its
/// cause in `CCEVENTCAUSE`; its dictionary values could not be established, so **ccmart does not read it**: the
/// technical result of a party is derived from the party rows and history (`transform::technical_result`).
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

/// Codes of `G_AGENT_STATE_HISTORY.TYPE`: what a record is (verified for the codes listed). Only state records
/// open a state period; the others (pending state, work-mode change, call connect/disconnect) do not.
pub mod agent_record_type {
    /// Unknown.
    pub const UNKNOWN: i64 = -1;
    /// Normal (reserved).
    pub const NORMAL: i64 = 0;
    /// The agent's state changed (`STATE`, with the `WORKMODE` it was entered with).
    pub const STATE: i64 = 5;
    /// The agent's pending state changed (`PENDINGSTATE`: a state asked for while busy).
    pub const PENDING_STATE: i64 = 6;
}

/// Codes of `G_AGENT_STATE_HISTORY.STATE` and `G_AGENT_STATE_RC.AGENTSTATE`. **ccmart's assumption** (the
/// dictionary values were not available). After-call work is not a state: it is a state entered with work mode
/// [`work_mode::AFTER_CALL_WORK`], as in the Genesys agent model.
pub mod agent_state {
    /// Ready for calls.
    pub const READY: i64 = 1;
    /// Not ready (with a reason code in `G_AGENT_STATE_RC` when the agent gave one).
    pub const NOT_READY: i64 = 2;
    /// ccmart's code for the derived state "not ready in work mode after-call work"; never a value of `STATE`.
    pub const AFTER_CALL_WORK: i64 = 3;
    /// Busy on a call.
    pub const BUSY: i64 = 4;
    /// Logged out (closes the session's last period).
    pub const LOGGED_OUT: i64 = 5;
    /// Accepted codes of `STATE`.
    pub const ALL: &[i64] = &[READY, NOT_READY, BUSY, LOGGED_OUT];
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

/// Codes of `G_AGENT_STATE_HISTORY.WORKMODE` and `G_AGENT_STATE_RC.WORKMODE`: the T-Library agent work mode
/// (`AgentWorkMode`), taken to be what ICON stores (docs/idb-contract.md: an inference).
pub mod work_mode {
    /// Unknown / not given.
    pub const UNKNOWN: i64 = 0;
    /// Auto-in: the next call is delivered as soon as the agent is ready.
    pub const AUTO_IN: i64 = 1;
    /// Manual-in.
    pub const MANUAL_IN: i64 = 2;
    /// After-call work: the agent wraps up the call that just ended.
    pub const AFTER_CALL_WORK: i64 = 3;
    /// Auxiliary work (a break, with a reason code).
    pub const AUX_WORK: i64 = 4;
}

/// Codes of `GC_AGENT.TYPE` (the vendor's dictionary 509, the Configuration Server's `CfgFlag` "is agent"): a
/// person without the flag is a supervisor, not an agent.
pub mod person_type {
    /// ICON could not tell.
    pub const UNKNOWN: i64 = 0;
    /// Not an agent: a supervisor.
    pub const SUPERVISOR: i64 = 1;
    /// An agent.
    pub const AGENT: i64 = 2;
}

/// Codes of `G_LOGIN_SESSION.STATE`. **ccmart's assumption**; ccmart never decides anything by them — a session
/// has ended when `TERMINATED_TS` is set.
pub mod login_state {
    /// Agent is logged in.
    pub const ACTIVE: i64 = 1;
    /// Agent logged out; `TERMINATED_TS` is set.
    pub const ENDED: i64 = 2;
}
/// `G_CALL`: the latest state of one interaction. It is closed when `TERMINATED_TS` is set.
pub const G_CALL: TableSpec = TableSpec {
    name: "G_CALL",
    columns: &[
        int_req("ID"),
        text_req("CALLID"),
        text("CONNID").optional(),
        text("IRID").optional(),
        text("PARENTCALLID").optional(),
        int("STATE").optional(),
        enumeration("CALLTYPE", call_type::ALL),
        int_req("MEDIATYPE"),
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

/// `G_PARTY`: one participant endpoint of an interaction. `PARTYID` is the id ICON gives the association of the
/// party with the call (history rows name it); `ID` is only the row's number.
pub const G_PARTY: TableSpec = TableSpec {
    name: "G_PARTY",
    columns: &[
        int_req("ID"),
        text_req("PARTYID"),
        text("PARTYGUID").optional(),
        text_req("CALLID"),
        text("PARENTPARTYID").optional(),
        enumeration("TYPE", party_type::ALL),
        int("ENDPOINTTYPE").optional(),
        enumeration("PROLE", party_role::ALL),
        enumeration("STATE", party_state::ALL),
        int("CCEVENT").optional(),
        int("CCEVENTCAUSE").optional(),
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

/// The call of a `G_PARTY_HISTORY` row through its party, for an IDB whose history rows carry no `CALLID`.
pub const PARTY_HISTORY_CALLID: &str =
    "(SELECT p.CALLID FROM G_PARTY p WHERE p.PARTYID = G_PARTY_HISTORY.PARTYID ORDER BY p.ID LIMIT 1)";

/// `G_PARTY_HISTORY`: every state transition of every party, keyed by `PHID`, joined to its party by `PARTYID`.
pub const G_PARTY_HISTORY: TableSpec = TableSpec {
    name: "G_PARTY_HISTORY",
    columns: &[
        int_req("PHID"),
        text_req("PARTYID"),
        // Not among the vendor's columns seen: where it is missing, the call is the party's.
        text_req("CALLID").derived_from(PARTY_HISTORY_CALLID),
        int_req("PSEQ"),
        int("CHANGETYPE").optional(),
        enumeration("STATE", party_state::ALL),
        int("PREVSTATE").optional(),
        int("CCEVENT").optional(),
        int("CCEVENTCAUSE").optional(),
        int_req("ADDED_TS"),
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

/// `G_LOGIN_SESSION`: one agent login session. It has ended when `TERMINATED_TS` is set.
pub const G_LOGIN_SESSION: TableSpec = TableSpec {
    name: "G_LOGIN_SESSION",
    columns: &[
        int_req("ID"),
        text_req("LOGINSESSIONID"),
        int_req("AGENTID"),
        int("PLACEID").optional(),
        int("SWITCHID").optional(),
        int("STATE").optional(),
        int_req("CREATED_TS"),
        int("TERMINATED_TS"),
        int("GSYS_DOMAIN").optional(),
        int_req("GSYS_SEQ"),
        int("GSYS_USEQ"),
    ],
    grouping: Grouping::LoginSession("LOGINSESSIONID"),
};

/// `G_AGENT_STATE_HISTORY`: typed records of an agent's activity in a login session (`TYPE`: state change,
/// pending-state change, ...), numbered by `SEQ`. A state record's `WORKMODE` tells after-call work from other
/// not-ready time.
pub const G_AGENT_STATE_HISTORY: TableSpec = TableSpec {
    name: "G_AGENT_STATE_HISTORY",
    columns: &[
        int_req("ID"),
        int_req("TYPE"),
        text_req("LOGINSESSIONID"),
        int("AGENTID").optional(),
        int("ENDPOINTID").optional(),
        int("QUEUEID").optional(),
        int_req("SEQ"),
        enumeration("STATE", agent_state::ALL),
        int("PENDINGSTATE").optional(),
        int("WORKMODE").optional(),
        text("CALLID").optional(),
        int_req("ADDED_TS"),
        int("GSYS_DOMAIN").optional(),
        int_req("GSYS_SEQ"),
        int("GSYS_USEQ"),
    ],
    grouping: Grouping::LoginSession("LOGINSESSIONID"),
};

/// `G_AGENT_STATE_RC`: a reason code that has ended (ICON writes the row when it ends), keyed by the login
/// session (`SESSIONID`), endpoint, queue, state and work mode; ccmart matches it to the state period it overlaps.
pub const G_AGENT_STATE_RC: TableSpec = TableSpec {
    name: "G_AGENT_STATE_RC",
    columns: &[
        int_req("ID"),
        text_req("SESSIONID"),
        int("ENDPOINTID"),
        int("QUEUEID").optional(),
        int("AGENTSTATE"),
        int("WORKMODE"),
        int("HWFLAG").optional(),
        text_req("KEYNAME"),
        text("VALUE"),
        int_req("CREATED_TS"),
        int("TERMINATED_TS"),
        int("GSYS_DOMAIN").optional(),
        int_req("GSYS_SEQ"),
        int("GSYS_USEQ"),
    ],
    grouping: Grouping::LoginSession("SESSIONID"),
};

/// `GC_AGENT`: persons — agents and supervisors, told apart by `TYPE` (configuration DBID in `ID`, the same in
/// every IDB).
pub const GC_AGENT: TableSpec = TableSpec {
    name: "GC_AGENT",
    columns: &[
        int_req("ID"),
        int("TENANTID").optional(),
        text_req("USERNAME"),
        text("FIRSTNAME").optional(),
        text("LASTNAME").optional(),
        text("EMPLOYEEID").optional(),
        int("TYPE").optional(),
        int("STATUS").optional(),
        int("LASTCHANGE_TS").optional(),
        int("GSYS_DOMAIN").optional(),
        int_req("GSYS_SEQ"),
        int("GSYS_USEQ"),
    ],
    grouping: Grouping::Configuration,
};

/// `GC_ENDPOINT`: DNs (configuration DBID in `ID`); `TYPE` is the DN's configuration type ([`dn_type`]).
pub const GC_ENDPOINT: TableSpec = TableSpec {
    name: "GC_ENDPOINT",
    columns: &[
        int_req("ID"),
        int("TENANTID").optional(),
        int("SWITCHID").optional(),
        text_req("DN"),
        int_req("TYPE"),
        int("STATUS").optional(),
        int("LASTCHANGE_TS").optional(),
        int("GSYS_DOMAIN").optional(),
        int_req("GSYS_SEQ"),
        int("GSYS_USEQ"),
    ],
    grouping: Grouping::Configuration,
};

/// `GC_GROUP`: agent groups (configuration DBID in `ID`), e.g. the team that staffs a queue. `TYPE` 1 agent
/// group, 2 place group, 3 DN group.
pub const GC_GROUP: TableSpec = TableSpec {
    name: "GC_GROUP",
    columns: &[
        int_req("ID"),
        int("TENANTID").optional(),
        text_req("NAME"),
        int("TYPE").optional(),
        int("STATUS").optional(),
        int("LASTCHANGE_TS").optional(),
        int("GSYS_DOMAIN").optional(),
        int_req("GSYS_SEQ"),
        int("GSYS_USEQ"),
    ],
    grouping: Grouping::Configuration,
};

/// `GCX_GROUP_AGENT`: which agent belongs to which group since when. A membership that ends is not deleted: its
/// row gets `DELETED_TS`, and a new membership is a new row, so the IDB keeps the history reports by group need.
/// Like every `GCX_*` table its `ID` is numbered by each IDB and it has no `LASTCHANGE`: the merge takes each
/// (group, agent)'s memberships from the copy that knows the most, and the transform keys a membership by group,
/// agent and its rank among them.
pub const GCX_GROUP_AGENT: TableSpec = TableSpec {
    name: "GCX_GROUP_AGENT",
    columns: &[
        int_req("ID"),
        int_req("GROUPID"),
        int_req("AGENTID"),
        int_req("CREATED_TS"),
        int("DELETED_TS"),
        int("STATUS").optional(),
        int("GSYS_DOMAIN").optional(),
        int_req("GSYS_SEQ"),
        int("GSYS_USEQ"),
    ],
    grouping: Grouping::Configuration,
};

/// Columns shared by both session-control tables. The times are SQL timestamps (the vendor's layout);
/// `LEVENT_ITIME` (the heartbeat) is ccmart's assumption and may be missing (docs/idb-contract.md).
const SESSION_CONTROL_COLUMNS: &[ColumnSpec] = &[
    int_req("DSS_ID"),
    int_req("ICON_DBID"),
    int("DS_DBID").optional(),
    timestamp("DSCONN_STIME").required(),
    int("DSCONN_TYPE").optional(),
    timestamp("ICON_ETIME"),
    timestamp("DSCONN_ETIME"),
    timestamp("LEVENT_ITIME").optional(),
    int("GSYS_DOMAIN").optional(),
    int_req("GSYS_SEQ"),
    int("GSYS_USEQ"),
];

const fn session_control(name: &'static str) -> TableSpec {
    TableSpec { name, columns: SESSION_CONTROL_COLUMNS, grouping: Grouping::SessionControl }
}

/// `G_DSS_GCC_PROVIDER`: one row per connection of a collector (role `gcc`) to its data source. `DSCONN_STIME` /
/// `DSCONN_ETIME` bound the connection (`DSCONN_ETIME` null while connected), `ICON_ETIME` is set when the
/// collector shut down cleanly, and `LEVENT_ITIME`, where the IDB has it, is the collector's heartbeat: every row
/// of the IDB written for events up to that time has been committed before it.
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
