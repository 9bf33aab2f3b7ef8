-- ccmart: the IDB contract as PostgreSQL 15 DDL
--
-- The subset of a Genesys Interaction Concentrator (ICON) Interaction Database (IDB) that ccmart reads, in the
-- vendor's layout (table and column names, SQL types and codes from the ICON physical data model for PostgreSQL),
-- plus the tables the ccmart simulator writes next to them. `src/source/contract.rs` is the authoritative list of
-- tables, columns and value codes ccmart reads, and `docs/idb-contract.md` gives, per column and per code, whether
-- it is verified against the vendor's documentation (with the source) or ccmart's assumption. A test applies this
-- file to a real PostgreSQL and checks it column by column against contract.rs.
--
-- Used for: simulated IDBs, integration tests, and as a reference when pointing ccmart at a real ICON deployment
-- (a real IDB has many more tables and columns than these; ccmart ignores the rest, and `ccmart check-idb` says
-- which of the columns it reads a real IDB lacks).
--
-- Conventions
--   * The file runs as ONE batch (tokio-postgres batch_execute) and is idempotent: CREATE ... IF NOT EXISTS only,
--     so it can be applied to an existing IDB again.
--   * Identifiers are unquoted and written in UPPER CASE as ICON names them. PostgreSQL folds them to lower case,
--     and ccmart queries them unquoted, so both spellings work.
--   * Operational tables (G_*, GX_*) and configuration association tables (GCX_*) have an ID numbered by each IDB
--     (G_PARTY_HISTORY's key is PHID). Configuration tables (GC_*) have an integer ID that is the Configuration
--     Server DBID, the same in every IDB.
--   * Time columns come in threes: X timestamp (UTC), X_TS integer (the UTC seconds of X) and X_TCODE. ccmart reads
--     the _TS column only. The session-control tables (G_DSS_*) have timestamps only; ccmart reads those.
--   * Every table ends with the ICON system columns GSYS_*. GSYS_SEQ (insert counter) and GSYS_USEQ (update counter,
--     null until the row is first updated) come from this IDB's G_PROV_CONTROL and drive incremental extraction,
--     each has an index. GSYS_DOMAIN of an operational row is the DSS_ID of the data source session that wrote it.
--   * NOT NULL marks the columns contract.rs requires (ccmart quarantines a row that lacks one).

-- ---------------------------------------------------------------------------------------------------------------
-- Provisioning control: the counters behind GSYS_SEQ / GSYS_USEQ, one row per provider. ICON reserves counter
-- values in blocks (SEQCOUNTER); SEQCURRENT is the most recent value written, refreshed with a delay. ccmart does
-- not read this table (its high-water marks settle instead, see docs/idb-contract.md); the simulator keeps its
-- counter here.
-- ---------------------------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS G_PROV_CONTROL (
    DOMAINID        integer      NOT NULL,
    PRIMARYID       integer      NOT NULL,
    PROVIDERTAG     integer      NOT NULL,
    SEQCOUNTER      bigint       NOT NULL,
    SEQCURRENT      bigint,
    GSYS_DOMAIN     integer,
    GSYS_SEQ        bigint       NOT NULL,
    GSYS_USEQ       bigint,
    GSYS_SYS_ID     integer,
    GSYS_TS         timestamp,
    GSYS_TC         integer,
    GSYS_PARTITION  integer,
    GSYS_EXT_VCH1   varchar(255),
    GSYS_EXT_VCH2   varchar(255),
    GSYS_EXT_INT1   integer,
    GSYS_EXT_INT2   integer,
    PRIMARY KEY (DOMAINID, PROVIDERTAG)
);


-- ---------------------------------------------------------------------------------------------------------------
-- Role gcc: interactions and parties
-- ---------------------------------------------------------------------------------------------------------------

-- Latest state of one interaction. CALLID is the same in both IDBs of an HA pair, ID is not. ccmart treats the
-- interaction as closed when TERMINATED_TS is set.
-- CALLTYPE: T-Library call type 0 unknown, 1 internal, 2 inbound, 3 outbound, 4 consult.
-- MEDIATYPE: T-Library media type, 0 voice, 2 e-mail, 5 chat, ... (any code is read).
-- STATE: not decided by (ccmart's simulator writes 1 alive, 2 terminated). MERGECALLID / MERGETYPE not read yet.
CREATE TABLE IF NOT EXISTS G_CALL (
    ID              bigint       PRIMARY KEY,
    CALLID          varchar(50)  NOT NULL,
    CONNID          varchar(50),
    CONNIDNUM       numeric(20),
    SWITCHCALLID    varchar(50),
    IRID            varchar(50),
    PARENTCALLID    varchar(50),
    MERGECALLID     varchar(50),
    MERGETYPE       integer,
    STATE           integer,
    CALLTYPE        integer      NOT NULL,
    MEDIATYPE       integer      NOT NULL,
    SWITCHID        integer,
    TENANTID        integer,
    CALLANI         varchar(255),
    CALLDNIS        varchar(255),
    CREATED         timestamp,
    CREATED_TS      integer      NOT NULL,
    CREATED_TCODE   integer,
    TERMINATED      timestamp,
    TERMINATED_TS   integer,
    TERMINATED_TCODE integer,
    GSYS_DOMAIN     integer,
    GSYS_SEQ        bigint       NOT NULL,
    GSYS_USEQ       bigint,
    GSYS_SYS_ID     integer,
    GSYS_TS         timestamp,
    GSYS_TC         integer,
    GSYS_PARTITION  integer,
    GSYS_EXT_VCH1   varchar(255),
    GSYS_EXT_VCH2   varchar(255),
    GSYS_EXT_INT1   integer,
    GSYS_EXT_INT2   integer
);
CREATE INDEX IF NOT EXISTS G_CALL_GSYS_SEQ  ON G_CALL (GSYS_SEQ);
CREATE INDEX IF NOT EXISTS G_CALL_GSYS_USEQ ON G_CALL (GSYS_USEQ);
CREATE INDEX IF NOT EXISTS G_CALL_CALLID ON G_CALL (CALLID);

-- Interaction root: groups the calls of one customer interaction (consults, transfers). Not read yet.
CREATE TABLE IF NOT EXISTS G_IR (
    ID              bigint       PRIMARY KEY,
    IRID            varchar(50)  NOT NULL,
    CREATED         timestamp,
    CREATED_TS      integer      NOT NULL,
    CREATED_TCODE   integer,
    TERMINATED      timestamp,
    TERMINATED_TS   integer,
    TERMINATED_TCODE integer,
    GSYS_DOMAIN     integer,
    GSYS_SEQ        bigint       NOT NULL,
    GSYS_USEQ       bigint,
    GSYS_SYS_ID     integer,
    GSYS_TS         timestamp,
    GSYS_TC         integer,
    GSYS_PARTITION  integer,
    GSYS_EXT_VCH1   varchar(255),
    GSYS_EXT_VCH2   varchar(255),
    GSYS_EXT_INT1   integer,
    GSYS_EXT_INT2   integer
);
CREATE INDEX IF NOT EXISTS G_IR_GSYS_SEQ  ON G_IR (GSYS_SEQ);
CREATE INDEX IF NOT EXISTS G_IR_GSYS_USEQ ON G_IR (GSYS_USEQ);

-- One participant endpoint of an interaction. PARTYID (the association of the party with the call; history rows
-- name it), PARENTPARTYID and PARTYGUID are generated by ICON and differ between the two IDBs of an HA pair.
-- TYPE: 0 unknown, 1 internal (a DN configured on the switch), 2 external, 3 MM place, 4 MM interaction queue,
-- 5 MM workbin, 6 MM routing strategy. ENDPOINTTYPE: the DN's configuration type (CfgDNType: 1 extension, 2 ACD
-- position, 3 ACD queue, 4 routing point, 5 virtual queue, ...). PROLE: T-Library party role (0-10).
-- STATE (ccmart's assumption): 1 dialing, 2 queued, 3 alerting, 4 connected, 5 held, 6 released.
-- CCEVENT: the call-control event of the party's end, cause in CCEVENTCAUSE; not read by ccmart (the simulator writes
-- 0 none, 1 completed, 2 abandoned, 3 transferred, 4 redirected, 5 distributed, 6 cleared).
CREATE TABLE IF NOT EXISTS G_PARTY (
    ID              bigint       PRIMARY KEY,
    PARTYID         varchar(50)  NOT NULL,
    PARTYGUID       varchar(50),
    CALLID          varchar(50)  NOT NULL,
    PARENTPARTYID   varchar(50),
    PARENTLINKTYPE  integer,
    TYPE            integer      NOT NULL,
    ENDPOINTTYPE    integer,
    PROLE           integer      NOT NULL,
    STATE           integer      NOT NULL,
    PREVSTATE       integer,
    CCEVENT         integer,
    CCEVENTCAUSE    integer,
    ENDPOINTID      integer,
    ENDPOINTDN      varchar(255),
    AGENTID         integer,
    CREATED         timestamp,
    CREATED_TS      integer      NOT NULL,
    CREATED_TCODE   integer,
    TERMINATED      timestamp,
    TERMINATED_TS   integer,
    TERMINATED_TCODE integer,
    GSYS_DOMAIN     integer,
    GSYS_SEQ        bigint       NOT NULL,
    GSYS_USEQ       bigint,
    GSYS_SYS_ID     integer,
    GSYS_TS         timestamp,
    GSYS_TC         integer,
    GSYS_PARTITION  integer,
    GSYS_EXT_VCH1   varchar(255),
    GSYS_EXT_VCH2   varchar(255),
    GSYS_EXT_INT1   integer,
    GSYS_EXT_INT2   integer
);
CREATE INDEX IF NOT EXISTS G_PARTY_GSYS_SEQ  ON G_PARTY (GSYS_SEQ);
CREATE INDEX IF NOT EXISTS G_PARTY_GSYS_USEQ ON G_PARTY (GSYS_USEQ);
CREATE INDEX IF NOT EXISTS G_PARTY_CALLID ON G_PARTY (CALLID);
CREATE INDEX IF NOT EXISTS G_PARTY_PARTYID ON G_PARTY (PARTYID);

-- Every state transition of every party: PSEQ numbers them within the party, PARTYID joins them to G_PARTY.PARTYID.
-- CHANGETYPE: 1 party created, 2 party terminated, 3 party state changed. STATE / CCEVENT as in G_PARTY.
-- CALLID on history rows is ccmart's assumption; without it ccmart reads the party's (docs/idb-contract.md).
CREATE TABLE IF NOT EXISTS G_PARTY_HISTORY (
    PHID            bigint       PRIMARY KEY,
    PARTYID         varchar(50)  NOT NULL,
    PSEQ            integer      NOT NULL,
    CSEQ            integer,
    CHANGETYPE      integer,
    CCEVENT         integer,
    CCEVENTCAUSE    integer,
    STATE           integer      NOT NULL,
    PREVSTATE       integer,
    CALLID          varchar(50)  NOT NULL,
    ADDED           timestamp,
    ADDED_TS        integer      NOT NULL,
    ADDED_TCODE     integer,
    GSYS_DOMAIN     integer,
    GSYS_SEQ        bigint       NOT NULL,
    GSYS_USEQ       bigint,
    GSYS_SYS_ID     integer,
    GSYS_TS         timestamp,
    GSYS_TC         integer,
    GSYS_PARTITION  integer,
    GSYS_EXT_VCH1   varchar(255),
    GSYS_EXT_VCH2   varchar(255),
    GSYS_EXT_INT1   integer,
    GSYS_EXT_INT2   integer
);
CREATE INDEX IF NOT EXISTS G_PARTY_HISTORY_GSYS_SEQ  ON G_PARTY_HISTORY (GSYS_SEQ);
CREATE INDEX IF NOT EXISTS G_PARTY_HISTORY_GSYS_USEQ ON G_PARTY_HISTORY (GSYS_USEQ);
CREATE INDEX IF NOT EXISTS G_PARTY_HISTORY_PARTYID ON G_PARTY_HISTORY (PARTYID);

-- Virtual-queue activity of an interaction. Not read yet.
CREATE TABLE IF NOT EXISTS G_VIRTUAL_QUEUE (
    ID              bigint       PRIMARY KEY,
    CALLID          varchar(50)  NOT NULL,
    DISTCALLID      varchar(50),
    ENDPOINTID      integer,
    ENDPOINTDN      varchar(255),
    CAUSE           integer,
    ADDED           timestamp,
    ADDED_TS        integer      NOT NULL,
    ADDED_TCODE     integer,
    REMOVED         timestamp,
    REMOVED_TS      integer,
    REMOVED_TCODE   integer,
    GSYS_DOMAIN     integer,
    GSYS_SEQ        bigint       NOT NULL,
    GSYS_USEQ       bigint,
    GSYS_SYS_ID     integer,
    GSYS_TS         timestamp,
    GSYS_TC         integer,
    GSYS_PARTITION  integer,
    GSYS_EXT_VCH1   varchar(255),
    GSYS_EXT_VCH2   varchar(255),
    GSYS_EXT_INT1   integer,
    GSYS_EXT_INT2   integer
);
CREATE INDEX IF NOT EXISTS G_VIRTUAL_QUEUE_GSYS_SEQ  ON G_VIRTUAL_QUEUE (GSYS_SEQ);
CREATE INDEX IF NOT EXISTS G_VIRTUAL_QUEUE_GSYS_USEQ ON G_VIRTUAL_QUEUE (GSYS_USEQ);

-- Role gud: attached-data key/value changes of an interaction (VALUE is capped by ICON's max-userdata-length).
CREATE TABLE IF NOT EXISTS G_USERDATA_HISTORY (
    ID              bigint       PRIMARY KEY,
    CALLID          varchar(50)  NOT NULL,
    PARTYID         varchar(50),
    CHANGETYPE      integer,
    KEYNAME         varchar(64)  NOT NULL,
    VALUE           varchar(255),
    ADDED           timestamp,
    ADDED_TS        integer      NOT NULL,
    ADDED_TCODE     integer,
    GSYS_DOMAIN     integer,
    GSYS_SEQ        bigint       NOT NULL,
    GSYS_USEQ       bigint,
    GSYS_SYS_ID     integer,
    GSYS_TS         timestamp,
    GSYS_TC         integer,
    GSYS_PARTITION  integer,
    GSYS_EXT_VCH1   varchar(255),
    GSYS_EXT_VCH2   varchar(255),
    GSYS_EXT_INT1   integer,
    GSYS_EXT_INT2   integer
);
CREATE INDEX IF NOT EXISTS G_USERDATA_HISTORY_GSYS_SEQ  ON G_USERDATA_HISTORY (GSYS_SEQ);
CREATE INDEX IF NOT EXISTS G_USERDATA_HISTORY_GSYS_USEQ ON G_USERDATA_HISTORY (GSYS_USEQ);
CREATE INDEX IF NOT EXISTS G_USERDATA_HISTORY_CALLID ON G_USERDATA_HISTORY (CALLID);


-- ---------------------------------------------------------------------------------------------------------------
-- Role gls: agent login sessions and states
-- ---------------------------------------------------------------------------------------------------------------

-- One agent login session, ended (TERMINATED_TS set) at logout. STATE: not decided by (the simulator writes
-- 1 active, 2 ended).
CREATE TABLE IF NOT EXISTS G_LOGIN_SESSION (
    ID              bigint       PRIMARY KEY,
    LOGINSESSIONID  varchar(50)  NOT NULL,
    AGENTID         integer      NOT NULL,
    LOGINID         integer,
    PLACEID         integer,
    STATE           integer,
    PRIMARYDEVICEID integer,
    SWITCHID        integer,
    CREATED         timestamp,
    CREATED_TS      integer      NOT NULL,
    CREATED_TCODE   integer,
    TERMINATED      timestamp,
    TERMINATED_TS   integer,
    TERMINATED_TCODE integer,
    GSYS_DOMAIN     integer,
    GSYS_SEQ        bigint       NOT NULL,
    GSYS_USEQ       bigint,
    GSYS_SYS_ID     integer,
    GSYS_TS         timestamp,
    GSYS_TC         integer,
    GSYS_PARTITION  integer,
    GSYS_EXT_VCH1   varchar(255),
    GSYS_EXT_VCH2   varchar(255),
    GSYS_EXT_INT1   integer,
    GSYS_EXT_INT2   integer
);
CREATE INDEX IF NOT EXISTS G_LOGIN_SESSION_GSYS_SEQ  ON G_LOGIN_SESSION (GSYS_SEQ);
CREATE INDEX IF NOT EXISTS G_LOGIN_SESSION_GSYS_USEQ ON G_LOGIN_SESSION (GSYS_USEQ);
CREATE INDEX IF NOT EXISTS G_LOGIN_SESSION_LOGINSESSIONID ON G_LOGIN_SESSION (LOGINSESSIONID);

-- Which endpoints (DNs, queues) a login session used. Not read yet.
CREATE TABLE IF NOT EXISTS GX_SESSION_ENDPOINT (
    ID              bigint       PRIMARY KEY,
    LOGINSESSIONID  varchar(50)  NOT NULL,
    AGENTID         integer,
    ENDPOINTID      integer,
    ENDPOINTDN      varchar(255),
    ENDPOINTTYPE    integer,
    QUEUEID         integer,
    PLACEID         integer,
    STATE           integer,
    CREATED         timestamp,
    CREATED_TS      integer      NOT NULL,
    CREATED_TCODE   integer,
    TERMINATED      timestamp,
    TERMINATED_TS   integer,
    TERMINATED_TCODE integer,
    GSYS_DOMAIN     integer,
    GSYS_SEQ        bigint       NOT NULL,
    GSYS_USEQ       bigint,
    GSYS_SYS_ID     integer,
    GSYS_TS         timestamp,
    GSYS_TC         integer,
    GSYS_PARTITION  integer,
    GSYS_EXT_VCH1   varchar(255),
    GSYS_EXT_VCH2   varchar(255),
    GSYS_EXT_INT1   integer,
    GSYS_EXT_INT2   integer
);
CREATE INDEX IF NOT EXISTS GX_SESSION_ENDPOINT_GSYS_SEQ  ON GX_SESSION_ENDPOINT (GSYS_SEQ);
CREATE INDEX IF NOT EXISTS GX_SESSION_ENDPOINT_GSYS_USEQ ON GX_SESSION_ENDPOINT (GSYS_USEQ);

-- Typed records of an agent's activity. TYPE: -1 unknown, 0 normal, 5 state change, 6 pending-state change (others:
-- work-mode change, call connect / disconnect). STATE / PENDINGSTATE (ccmart's assumption): 1 ready, 2 not ready,
-- 4 busy, 5 logged out. WORKMODE: T-Library work mode, 3 after-call work, 4 auxiliary work. SEQ counts the records
-- of an agent device. CALLID (the call an after-call work record follows) is ccmart's assumption.
CREATE TABLE IF NOT EXISTS G_AGENT_STATE_HISTORY (
    ID              bigint       PRIMARY KEY,
    TYPE            integer      NOT NULL,
    STATE           integer      NOT NULL,
    PENDINGSTATE    integer,
    SEQ             integer      NOT NULL,
    LOGINSESSIONID  varchar(50)  NOT NULL,
    AGENTID         integer,
    LOGINID         integer,
    ENDPOINTID      integer,
    QUEUEID         integer,
    WORKMODE        integer,
    CALLID          varchar(50),
    ADDED           timestamp,
    ADDED_TS        integer      NOT NULL,
    ADDED_TCODE     integer,
    GSYS_DOMAIN     integer,
    GSYS_SEQ        bigint       NOT NULL,
    GSYS_USEQ       bigint,
    GSYS_SYS_ID     integer,
    GSYS_TS         timestamp,
    GSYS_TC         integer,
    GSYS_PARTITION  integer,
    GSYS_EXT_VCH1   varchar(255),
    GSYS_EXT_VCH2   varchar(255),
    GSYS_EXT_INT1   integer,
    GSYS_EXT_INT2   integer
);
CREATE INDEX IF NOT EXISTS G_AGENT_STATE_HISTORY_GSYS_SEQ  ON G_AGENT_STATE_HISTORY (GSYS_SEQ);
CREATE INDEX IF NOT EXISTS G_AGENT_STATE_HISTORY_GSYS_USEQ ON G_AGENT_STATE_HISTORY (GSYS_USEQ);
CREATE INDEX IF NOT EXISTS G_AGENT_STATE_HISTORY_LOGINSESSIONID ON G_AGENT_STATE_HISTORY (LOGINSESSIONID);

-- A reason code that has ended (ICON inserts the row when it ends; the open ones are in G_AGENT_STATE_RC_A):
-- SESSIONID is the G_LOGIN_SESSION.LOGINSESSIONID, HWFLAG 1 for a hardware reason (KEYNAME 'ReasonCode'), VALUE the
-- code.
CREATE TABLE IF NOT EXISTS G_AGENT_STATE_RC (
    ID              bigint       PRIMARY KEY,
    SESSIONID       varchar(50)  NOT NULL,
    ENDPOINTID      integer,
    QUEUEID         integer,
    AGENTSTATE      integer,
    WORKMODE        integer,
    HWFLAG          smallint,
    KEYNAME         varchar(255) NOT NULL,
    VALUE           varchar(255),
    CREATED         timestamp,
    CREATED_TS      integer      NOT NULL,
    CREATED_TCODE   integer,
    TERMINATED      timestamp,
    TERMINATED_TS   integer,
    TERMINATED_TCODE integer,
    GSYS_DOMAIN     integer,
    GSYS_SEQ        bigint       NOT NULL,
    GSYS_USEQ       bigint,
    GSYS_SYS_ID     integer,
    GSYS_TS         timestamp,
    GSYS_TC         integer,
    GSYS_PARTITION  integer,
    GSYS_EXT_VCH1   varchar(255),
    GSYS_EXT_VCH2   varchar(255),
    GSYS_EXT_INT1   integer,
    GSYS_EXT_INT2   integer
);
CREATE INDEX IF NOT EXISTS G_AGENT_STATE_RC_GSYS_SEQ  ON G_AGENT_STATE_RC (GSYS_SEQ);
CREATE INDEX IF NOT EXISTS G_AGENT_STATE_RC_GSYS_USEQ ON G_AGENT_STATE_RC (GSYS_USEQ);
CREATE INDEX IF NOT EXISTS G_AGENT_STATE_RC_SESSIONID ON G_AGENT_STATE_RC (SESSIONID);


-- ---------------------------------------------------------------------------------------------------------------
-- Role cfg: configuration (GC_* ID = Configuration Server DBID, the same in every IDB)
-- ---------------------------------------------------------------------------------------------------------------

-- Persons. TYPE: the is-agent flag (CfgFlag, dictionary 509): 0 unknown, 1 no (a supervisor), 2 yes (an agent).
CREATE TABLE IF NOT EXISTS GC_AGENT (
    ID              integer      PRIMARY KEY,
    TENANTID        integer,
    FOLDERID        integer,
    USERNAME        varchar(255) NOT NULL,
    FIRSTNAME       varchar(64),
    LASTNAME        varchar(64),
    EMPLOYEEID      varchar(64),
    EMAIL           varchar(255),
    TYPE            integer,
    STATE           integer,
    PLACEID         integer,
    STATUS          integer,
    CREATED         timestamp,
    CREATED_TS      integer,
    CREATED_TCODE   integer,
    DELETED         timestamp,
    DELETED_TS      integer,
    DELETED_TCODE   integer,
    LASTCHANGE      timestamp,
    LASTCHANGE_TS   integer,
    LASTCHANGE_TCODE integer,
    GSYS_DOMAIN     integer,
    GSYS_SEQ        bigint       NOT NULL,
    GSYS_USEQ       bigint,
    GSYS_SYS_ID     integer,
    GSYS_TS         timestamp,
    GSYS_TC         integer,
    GSYS_PARTITION  integer,
    GSYS_EXT_VCH1   varchar(255),
    GSYS_EXT_VCH2   varchar(255),
    GSYS_EXT_INT1   integer,
    GSYS_EXT_INT2   integer
);
CREATE INDEX IF NOT EXISTS GC_AGENT_GSYS_SEQ  ON GC_AGENT (GSYS_SEQ);
CREATE INDEX IF NOT EXISTS GC_AGENT_GSYS_USEQ ON GC_AGENT (GSYS_USEQ);

-- DNs. TYPE: CfgDNType, 1 extension, 2 ACD position, 3 ACD queue, 4 routing point, 5 virtual queue, 6 virtual
-- routing point, 19 external routing point, 22 routing queue, ...
CREATE TABLE IF NOT EXISTS GC_ENDPOINT (
    ID              integer      PRIMARY KEY,
    TENANTID        integer,
    SWITCHID        integer,
    DN              varchar(255) NOT NULL,
    TYPE            integer      NOT NULL,
    STATUS          integer,
    CREATED         timestamp,
    CREATED_TS      integer,
    CREATED_TCODE   integer,
    DELETED         timestamp,
    DELETED_TS      integer,
    DELETED_TCODE   integer,
    LASTCHANGE      timestamp,
    LASTCHANGE_TS   integer,
    LASTCHANGE_TCODE integer,
    GSYS_DOMAIN     integer,
    GSYS_SEQ        bigint       NOT NULL,
    GSYS_USEQ       bigint,
    GSYS_SYS_ID     integer,
    GSYS_TS         timestamp,
    GSYS_TC         integer,
    GSYS_PARTITION  integer,
    GSYS_EXT_VCH1   varchar(255),
    GSYS_EXT_VCH2   varchar(255),
    GSYS_EXT_INT1   integer,
    GSYS_EXT_INT2   integer
);
CREATE INDEX IF NOT EXISTS GC_ENDPOINT_GSYS_SEQ  ON GC_ENDPOINT (GSYS_SEQ);
CREATE INDEX IF NOT EXISTS GC_ENDPOINT_GSYS_USEQ ON GC_ENDPOINT (GSYS_USEQ);

-- Places. Not read yet.
CREATE TABLE IF NOT EXISTS GC_PLACE (
    ID              integer      PRIMARY KEY,
    TENANTID        integer,
    NAME            varchar(255) NOT NULL,
    STATUS          integer,
    CREATED         timestamp,
    CREATED_TS      integer,
    CREATED_TCODE   integer,
    DELETED         timestamp,
    DELETED_TS      integer,
    DELETED_TCODE   integer,
    LASTCHANGE      timestamp,
    LASTCHANGE_TS   integer,
    LASTCHANGE_TCODE integer,
    GSYS_DOMAIN     integer,
    GSYS_SEQ        bigint       NOT NULL,
    GSYS_USEQ       bigint,
    GSYS_SYS_ID     integer,
    GSYS_TS         timestamp,
    GSYS_TC         integer,
    GSYS_PARTITION  integer,
    GSYS_EXT_VCH1   varchar(255),
    GSYS_EXT_VCH2   varchar(255),
    GSYS_EXT_INT1   integer,
    GSYS_EXT_INT2   integer
);
CREATE INDEX IF NOT EXISTS GC_PLACE_GSYS_SEQ  ON GC_PLACE (GSYS_SEQ);
CREATE INDEX IF NOT EXISTS GC_PLACE_GSYS_USEQ ON GC_PLACE (GSYS_USEQ);

-- Agent / place / DN groups. TYPE (CfgGroupType, dictionary 540): 0 unknown, 1 agent group, 2 place group, 3 DN
-- group, 4 access group.
CREATE TABLE IF NOT EXISTS GC_GROUP (
    ID              integer      PRIMARY KEY,
    NAME            varchar(255) NOT NULL,
    TENANTID        integer,
    FOLDERID        integer,
    TYPE            integer,
    DNGROUPTYPE     integer,
    STATE           integer,
    SCRIPT          varchar(1024),
    STATUS          integer,
    CREATED         timestamp,
    CREATED_TS      integer,
    CREATED_TCODE   integer,
    DELETED         timestamp,
    DELETED_TS      integer,
    DELETED_TCODE   integer,
    LASTCHANGE      timestamp,
    LASTCHANGE_TS   integer,
    LASTCHANGE_TCODE integer,
    GSYS_DOMAIN     integer,
    GSYS_SEQ        bigint       NOT NULL,
    GSYS_USEQ       bigint,
    GSYS_SYS_ID     integer,
    GSYS_TS         timestamp,
    GSYS_TC         integer,
    GSYS_PARTITION  integer,
    GSYS_EXT_VCH1   varchar(255),
    GSYS_EXT_VCH2   varchar(255),
    GSYS_EXT_INT1   integer,
    GSYS_EXT_INT2   integer
);
CREATE INDEX IF NOT EXISTS GC_GROUP_GSYS_SEQ  ON GC_GROUP (GSYS_SEQ);
CREATE INDEX IF NOT EXISTS GC_GROUP_GSYS_USEQ ON GC_GROUP (GSYS_USEQ);

-- Agent group membership: one row per membership, numbered by each IDB; DELETED_TS ends it (the row stays, so
-- history is kept). Like every GCX_* table it has no LASTCHANGE.
CREATE TABLE IF NOT EXISTS GCX_GROUP_AGENT (
    ID              bigint       PRIMARY KEY,
    GROUPID         integer      NOT NULL,
    AGENTID         integer      NOT NULL,
    STATUS          integer,
    CREATED         timestamp,
    CREATED_TS      integer      NOT NULL,
    CREATED_TCODE   integer,
    DELETED         timestamp,
    DELETED_TS      integer,
    DELETED_TCODE   integer,
    GSYS_DOMAIN     integer,
    GSYS_SEQ        bigint       NOT NULL,
    GSYS_USEQ       bigint,
    GSYS_SYS_ID     integer,
    GSYS_TS         timestamp,
    GSYS_TC         integer,
    GSYS_PARTITION  integer,
    GSYS_EXT_VCH1   varchar(255),
    GSYS_EXT_VCH2   varchar(255),
    GSYS_EXT_INT1   integer,
    GSYS_EXT_INT2   integer
);
CREATE INDEX IF NOT EXISTS GCX_GROUP_AGENT_GSYS_SEQ  ON GCX_GROUP_AGENT (GSYS_SEQ);
CREATE INDEX IF NOT EXISTS GCX_GROUP_AGENT_GSYS_USEQ ON GCX_GROUP_AGENT (GSYS_USEQ);

-- Switches. TYPE: CfgSwitchType. Not read yet.
CREATE TABLE IF NOT EXISTS GC_SWITCH (
    ID              integer      PRIMARY KEY,
    TENANTID        integer,
    NAME            varchar(255) NOT NULL,
    TYPE            integer,
    LINKTYPE        integer,
    STATUS          integer,
    CREATED         timestamp,
    CREATED_TS      integer,
    CREATED_TCODE   integer,
    DELETED         timestamp,
    DELETED_TS      integer,
    DELETED_TCODE   integer,
    LASTCHANGE      timestamp,
    LASTCHANGE_TS   integer,
    LASTCHANGE_TCODE integer,
    GSYS_DOMAIN     integer,
    GSYS_SEQ        bigint       NOT NULL,
    GSYS_USEQ       bigint,
    GSYS_SYS_ID     integer,
    GSYS_TS         timestamp,
    GSYS_TC         integer,
    GSYS_PARTITION  integer,
    GSYS_EXT_VCH1   varchar(255),
    GSYS_EXT_VCH2   varchar(255),
    GSYS_EXT_INT1   integer,
    GSYS_EXT_INT2   integer
);
CREATE INDEX IF NOT EXISTS GC_SWITCH_GSYS_SEQ  ON GC_SWITCH (GSYS_SEQ);
CREATE INDEX IF NOT EXISTS GC_SWITCH_GSYS_USEQ ON GC_SWITCH (GSYS_USEQ);

-- Tenants. Not read yet.
CREATE TABLE IF NOT EXISTS GC_TENANT (
    ID              integer      PRIMARY KEY,
    NAME            varchar(255) NOT NULL,
    STATUS          integer,
    CREATED         timestamp,
    CREATED_TS      integer,
    CREATED_TCODE   integer,
    DELETED         timestamp,
    DELETED_TS      integer,
    DELETED_TCODE   integer,
    LASTCHANGE      timestamp,
    LASTCHANGE_TS   integer,
    LASTCHANGE_TCODE integer,
    GSYS_DOMAIN     integer,
    GSYS_SEQ        bigint       NOT NULL,
    GSYS_USEQ       bigint,
    GSYS_SYS_ID     integer,
    GSYS_TS         timestamp,
    GSYS_TC         integer,
    GSYS_PARTITION  integer,
    GSYS_EXT_VCH1   varchar(255),
    GSYS_EXT_VCH2   varchar(255),
    GSYS_EXT_INT1   integer,
    GSYS_EXT_INT2   integer
);
CREATE INDEX IF NOT EXISTS GC_TENANT_GSYS_SEQ  ON GC_TENANT (GSYS_SEQ);
CREATE INDEX IF NOT EXISTS GC_TENANT_GSYS_USEQ ON GC_TENANT (GSYS_USEQ);


-- ---------------------------------------------------------------------------------------------------------------
-- Data source session control: one table per role, same structure. One row = one connection of one ICON to one
-- data source. DSS_ID is the GSYS_DOMAIN of every operational row written on that connection.
-- DS_TYPE: 1 T-Server, 2 Interaction Server, 3 Outbound Contact Server.
-- DSCONN_TYPE: 1 first connection, 2 reconnect, 3 data source restart, 4 CTI link reconnect, 5 switchover to backup.
-- ICON_ETIME / DSCONN_ETIME are null while ICON runs / the connection is up. DSCONN_SDSTS is the only epoch column
-- (the data source's clock at connection). LEVENT_ITIME (ccmart's assumption; not in the vendor's documented
-- columns, so optional) is the collector's heartbeat: every row of this IDB for events up to that time has been
-- committed before it.
-- ccmart extracts G_DSS_GCC_PROVIDER and G_DSS_GLS_PROVIDER (read first, committed after the data tables of each
-- pass) for the per-slice HA merge; the other three are not read.
-- ---------------------------------------------------------------------------------------------------------------

-- Session control of role cfg.
CREATE TABLE IF NOT EXISTS G_DSS_CFG_PROVIDER (
    DSS_ID          bigint       PRIMARY KEY,
    ICON_DBID       integer      NOT NULL,
    DS_DBID         integer,
    DS_DBID_PRIM    integer,
    DS2_DBID        integer,
    DS_TYPE         integer,
    ICON_STIME      timestamp,
    DSCONN_STIME    timestamp    NOT NULL,
    DSCONN_TYPE     integer,
    ICON_ETIME      timestamp,
    DSCONN_ETIME    timestamp,
    DSCONN_SDSTIME  timestamp,
    DSCONN_SDSTS    integer,
    FEVENT_ITIME    timestamp,
    FEVENT_DSTIME   timestamp,
    FEVENT_DSSEQ    varchar(255),
    LEVENT_ITIME    timestamp,
    GSYS_DOMAIN     integer,
    GSYS_SEQ        bigint       NOT NULL,
    GSYS_USEQ       bigint,
    GSYS_SYS_ID     integer,
    GSYS_TS         timestamp,
    GSYS_TC         integer,
    GSYS_PARTITION  integer,
    GSYS_EXT_VCH1   varchar(255),
    GSYS_EXT_VCH2   varchar(255),
    GSYS_EXT_INT1   integer,
    GSYS_EXT_INT2   integer
);
CREATE INDEX IF NOT EXISTS G_DSS_CFG_PROVIDER_GSYS_SEQ  ON G_DSS_CFG_PROVIDER (GSYS_SEQ);
CREATE INDEX IF NOT EXISTS G_DSS_CFG_PROVIDER_GSYS_USEQ ON G_DSS_CFG_PROVIDER (GSYS_USEQ);

-- Session control of role gcc.
CREATE TABLE IF NOT EXISTS G_DSS_GCC_PROVIDER (
    DSS_ID          bigint       PRIMARY KEY,
    ICON_DBID       integer      NOT NULL,
    DS_DBID         integer,
    DS_DBID_PRIM    integer,
    DS2_DBID        integer,
    DS_TYPE         integer,
    ICON_STIME      timestamp,
    DSCONN_STIME    timestamp    NOT NULL,
    DSCONN_TYPE     integer,
    ICON_ETIME      timestamp,
    DSCONN_ETIME    timestamp,
    DSCONN_SDSTIME  timestamp,
    DSCONN_SDSTS    integer,
    FEVENT_ITIME    timestamp,
    FEVENT_DSTIME   timestamp,
    FEVENT_DSSEQ    varchar(255),
    LEVENT_ITIME    timestamp,
    GSYS_DOMAIN     integer,
    GSYS_SEQ        bigint       NOT NULL,
    GSYS_USEQ       bigint,
    GSYS_SYS_ID     integer,
    GSYS_TS         timestamp,
    GSYS_TC         integer,
    GSYS_PARTITION  integer,
    GSYS_EXT_VCH1   varchar(255),
    GSYS_EXT_VCH2   varchar(255),
    GSYS_EXT_INT1   integer,
    GSYS_EXT_INT2   integer
);
CREATE INDEX IF NOT EXISTS G_DSS_GCC_PROVIDER_GSYS_SEQ  ON G_DSS_GCC_PROVIDER (GSYS_SEQ);
CREATE INDEX IF NOT EXISTS G_DSS_GCC_PROVIDER_GSYS_USEQ ON G_DSS_GCC_PROVIDER (GSYS_USEQ);

-- Session control of role gls.
CREATE TABLE IF NOT EXISTS G_DSS_GLS_PROVIDER (
    DSS_ID          bigint       PRIMARY KEY,
    ICON_DBID       integer      NOT NULL,
    DS_DBID         integer,
    DS_DBID_PRIM    integer,
    DS2_DBID        integer,
    DS_TYPE         integer,
    ICON_STIME      timestamp,
    DSCONN_STIME    timestamp    NOT NULL,
    DSCONN_TYPE     integer,
    ICON_ETIME      timestamp,
    DSCONN_ETIME    timestamp,
    DSCONN_SDSTIME  timestamp,
    DSCONN_SDSTS    integer,
    FEVENT_ITIME    timestamp,
    FEVENT_DSTIME   timestamp,
    FEVENT_DSSEQ    varchar(255),
    LEVENT_ITIME    timestamp,
    GSYS_DOMAIN     integer,
    GSYS_SEQ        bigint       NOT NULL,
    GSYS_USEQ       bigint,
    GSYS_SYS_ID     integer,
    GSYS_TS         timestamp,
    GSYS_TC         integer,
    GSYS_PARTITION  integer,
    GSYS_EXT_VCH1   varchar(255),
    GSYS_EXT_VCH2   varchar(255),
    GSYS_EXT_INT1   integer,
    GSYS_EXT_INT2   integer
);
CREATE INDEX IF NOT EXISTS G_DSS_GLS_PROVIDER_GSYS_SEQ  ON G_DSS_GLS_PROVIDER (GSYS_SEQ);
CREATE INDEX IF NOT EXISTS G_DSS_GLS_PROVIDER_GSYS_USEQ ON G_DSS_GLS_PROVIDER (GSYS_USEQ);

-- Session control of role gud.
CREATE TABLE IF NOT EXISTS G_DSS_GUD_PROVIDER (
    DSS_ID          bigint       PRIMARY KEY,
    ICON_DBID       integer      NOT NULL,
    DS_DBID         integer,
    DS_DBID_PRIM    integer,
    DS2_DBID        integer,
    DS_TYPE         integer,
    ICON_STIME      timestamp,
    DSCONN_STIME    timestamp    NOT NULL,
    DSCONN_TYPE     integer,
    ICON_ETIME      timestamp,
    DSCONN_ETIME    timestamp,
    DSCONN_SDSTIME  timestamp,
    DSCONN_SDSTS    integer,
    FEVENT_ITIME    timestamp,
    FEVENT_DSTIME   timestamp,
    FEVENT_DSSEQ    varchar(255),
    LEVENT_ITIME    timestamp,
    GSYS_DOMAIN     integer,
    GSYS_SEQ        bigint       NOT NULL,
    GSYS_USEQ       bigint,
    GSYS_SYS_ID     integer,
    GSYS_TS         timestamp,
    GSYS_TC         integer,
    GSYS_PARTITION  integer,
    GSYS_EXT_VCH1   varchar(255),
    GSYS_EXT_VCH2   varchar(255),
    GSYS_EXT_INT1   integer,
    GSYS_EXT_INT2   integer
);
CREATE INDEX IF NOT EXISTS G_DSS_GUD_PROVIDER_GSYS_SEQ  ON G_DSS_GUD_PROVIDER (GSYS_SEQ);
CREATE INDEX IF NOT EXISTS G_DSS_GUD_PROVIDER_GSYS_USEQ ON G_DSS_GUD_PROVIDER (GSYS_USEQ);

-- Session control of role gos.
CREATE TABLE IF NOT EXISTS G_DSS_GOS_PROVIDER (
    DSS_ID          bigint       PRIMARY KEY,
    ICON_DBID       integer      NOT NULL,
    DS_DBID         integer,
    DS_DBID_PRIM    integer,
    DS2_DBID        integer,
    DS_TYPE         integer,
    ICON_STIME      timestamp,
    DSCONN_STIME    timestamp    NOT NULL,
    DSCONN_TYPE     integer,
    ICON_ETIME      timestamp,
    DSCONN_ETIME    timestamp,
    DSCONN_SDSTIME  timestamp,
    DSCONN_SDSTS    integer,
    FEVENT_ITIME    timestamp,
    FEVENT_DSTIME   timestamp,
    FEVENT_DSSEQ    varchar(255),
    LEVENT_ITIME    timestamp,
    GSYS_DOMAIN     integer,
    GSYS_SEQ        bigint       NOT NULL,
    GSYS_USEQ       bigint,
    GSYS_SYS_ID     integer,
    GSYS_TS         timestamp,
    GSYS_TC         integer,
    GSYS_PARTITION  integer,
    GSYS_EXT_VCH1   varchar(255),
    GSYS_EXT_VCH2   varchar(255),
    GSYS_EXT_INT1   integer,
    GSYS_EXT_INT2   integer
);
CREATE INDEX IF NOT EXISTS G_DSS_GOS_PROVIDER_GSYS_SEQ  ON G_DSS_GOS_PROVIDER (GSYS_SEQ);
CREATE INDEX IF NOT EXISTS G_DSS_GOS_PROVIDER_GSYS_USEQ ON G_DSS_GOS_PROVIDER (GSYS_USEQ);

-- ---------------------------------------------------------------------------------------------------------------
-- The dictionary of code values ICON's initialisation scripts fill. The vendor documents four columns (dictionary
-- type, code, name, description); their names could not be established, so the names below are ccmart's and
-- ccmart reads the table by column position (src/source/dictionary.rs). The rows are the codes the simulator
-- writes: party states (dictionary 8, ccmart's numbering) and party types (dictionary 9, the vendor's).
-- ---------------------------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS G_DICTIONARY (
    DICT_TYPE       integer      NOT NULL,
    DICT_CODE       integer      NOT NULL,
    NAME            varchar(128) NOT NULL,
    DESCRIPTION     varchar(255),
    PRIMARY KEY (DICT_TYPE, DICT_CODE)
);
INSERT INTO G_DICTIONARY (DICT_TYPE, DICT_CODE, NAME, DESCRIPTION) VALUES
    (8, 1, 'Dialing', 'the party is dialing'),
    (8, 2, 'Queued', 'the party waits in a queue or at a routing point'),
    (8, 3, 'Alerting', 'the party is ringing'),
    (8, 4, 'Connected', 'the party is connected'),
    (8, 5, 'Held', 'the party is on hold'),
    (8, 6, 'Released', 'the party has left the call'),
    (9, 0, 'Unknown', NULL),
    (9, 1, 'Internal', 'a device defined in the switch configuration'),
    (9, 2, 'External', 'a device outside the switch'),
    (9, 3, 'MM Place', NULL),
    (9, 4, 'MM Interaction Queue', NULL),
    (9, 5, 'MM Interaction Workbin', NULL),
    (9, 6, 'MM Routing Strategy', NULL)
ON CONFLICT DO NOTHING;
