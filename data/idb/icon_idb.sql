-- ccmart: the IDB contract as PostgreSQL 15 DDL
--
-- The subset of a Genesys Interaction Concentrator (ICON) Interaction Database (IDB) that ccmart reads, plus the
-- tables the ccmart simulator writes next to them. `src/source/contract.rs` is the authoritative list of tables,
-- columns and value codes, and `docs/idb-contract.md` explains them. A test applies this file to a real PostgreSQL
-- and checks that every column named in contract.rs exists.
--
-- Used for: simulated IDBs, integration tests, and as a reference
-- when pointing ccmart at a real ICON deployment (a real IDB has more tables and columns than these, ccmart
-- ignores the rest).
--
-- Conventions
--   * The file runs as ONE batch (tokio-postgres batch_execute) and is idempotent: CREATE ... IF NOT EXISTS only,
--     so it can be applied to an existing IDB again.
--   * Identifiers are unquoted and written in UPPER CASE as ICON names them. PostgreSQL folds them to lower case,
--     and ccmart queries them unquoted, so both spellings work.
--   * Operational tables (G_*, GX_*) have a bigint ID. Configuration tables (GC_*) have an integer ID that is the
--     Configuration Server DBID, the same in every IDB.
--   * Time columns come in pairs: X timestamp (UTC) and X_TS bigint (UTC seconds since 1970). ccmart reads the
--     _TS column only. The session-control *TIME columns are epoch seconds without a twin.
--   * Every table ends with the ICON system columns GSYS_*. GSYS_SEQ (insert counter) and GSYS_USEQ (update counter,
--     null until the row is first updated) come from this IDB's G_PROV_CONTROL and drive incremental extraction,
--     each has an index. GSYS_DOMAIN of an operational row is the DSS_ID of the data source session that wrote it.
--   * NOT NULL marks the columns contract.rs requires (ccmart quarantines a row that lacks one).

-- ---------------------------------------------------------------------------------------------------------------
-- Provisioning control: the per-IDB counters behind GSYS_SEQ / GSYS_USEQ
-- ---------------------------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS G_PROV_CONTROL (
    ID              integer      PRIMARY KEY,
    NAME            varchar(64)  NOT NULL UNIQUE,
    VALUE           bigint       NOT NULL,
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
CREATE INDEX IF NOT EXISTS G_PROV_CONTROL_GSYS_SEQ  ON G_PROV_CONTROL (GSYS_SEQ);
CREATE INDEX IF NOT EXISTS G_PROV_CONTROL_GSYS_USEQ ON G_PROV_CONTROL (GSYS_USEQ);

-- ---------------------------------------------------------------------------------------------------------------
-- Role gcc: interactions and parties
-- ---------------------------------------------------------------------------------------------------------------

-- Latest state of one interaction. CALLID is the same in both IDBs of an HA pair, ID is not.
-- STATE: 1 alive, 2 terminated. CALLTYPE: 1 internal, 2 inbound, 3 outbound, 4 consult.
-- MEDIATYPE: 1 voice, 2 email, 3 chat. MERGECALLID / MERGETYPE (transfer/conference linkage) are not read yet.
CREATE TABLE IF NOT EXISTS G_CALL (
    ID              bigint       PRIMARY KEY,
    CALLID          varchar(64)  NOT NULL,
    CONNID          varchar(64),
    IRID            varchar(64),
    PARENTCALLID    varchar(64),
    MERGECALLID     varchar(64),
    MERGETYPE       integer,
    STATE           integer      NOT NULL,
    CALLTYPE        integer      NOT NULL,
    MEDIATYPE       integer      NOT NULL,
    SWITCHID        integer,
    TENANTID        integer,
    CREATED         timestamp,
    CREATED_TS      bigint       NOT NULL,
    TERMINATED      timestamp,
    TERMINATED_TS   bigint,
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
CREATE INDEX IF NOT EXISTS G_CALL_CALLID    ON G_CALL (CALLID);

-- Interaction root: groups the calls of one customer interaction (consults, transfers). Not read yet.
CREATE TABLE IF NOT EXISTS G_IR (
    ID              bigint       PRIMARY KEY,
    IRID            varchar(64)  NOT NULL,
    CREATED         timestamp,
    CREATED_TS      bigint       NOT NULL,
    TERMINATED      timestamp,
    TERMINATED_TS   bigint,
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

-- One participant endpoint of an interaction. ID (= PARTYID elsewhere), PARENTPARTYID and PARTYGUID are generated
-- by ICON and differ between the two IDBs of an HA pair.
-- TYPE: 1 external, 2 agent DN, 3 ACD queue, 4 routing point. PROLE: 1 originator, 2 destination,
-- 3 transfer destination, 4 conference member. STATE: 1 dialing, 2 queued, 3 alerting, 4 connected, 5 held,
-- 6 released. CCEVENT (end cause): 0 none, 1 completed, 2 abandoned, 3 transferred, 4 redirected, 5 distributed,
-- 6 cleared.
CREATE TABLE IF NOT EXISTS G_PARTY (
    ID              bigint       PRIMARY KEY,
    PARTYGUID       varchar(64),
    CALLID          varchar(64)  NOT NULL,
    PARENTPARTYID   bigint,
    TYPE            integer      NOT NULL,
    PROLE           integer      NOT NULL,
    STATE           integer      NOT NULL,
    CCEVENT         integer      NOT NULL,
    ENDPOINTID      integer,
    ENDPOINTDN      varchar(255),
    AGENTID         integer,
    CREATED         timestamp,
    CREATED_TS      bigint       NOT NULL,
    TERMINATED      timestamp,
    TERMINATED_TS   bigint,
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
CREATE INDEX IF NOT EXISTS G_PARTY_CALLID    ON G_PARTY (CALLID);

-- Every state transition of every party, numbered by PSEQ within the party. STATE and CCEVENT as in G_PARTY.
CREATE TABLE IF NOT EXISTS G_PARTY_HISTORY (
    ID              bigint       PRIMARY KEY,
    PARTYID         bigint       NOT NULL,
    CALLID          varchar(64)  NOT NULL,
    PSEQ            integer      NOT NULL,
    STATE           integer      NOT NULL,
    CCEVENT         integer      NOT NULL,
    CHANGED         timestamp,
    CHANGED_TS      bigint       NOT NULL,
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
CREATE INDEX IF NOT EXISTS G_PARTY_HISTORY_CALLID    ON G_PARTY_HISTORY (CALLID);

-- Virtual-queue activity of an interaction. Not read yet.
CREATE TABLE IF NOT EXISTS G_VIRTUAL_QUEUE (
    ID              bigint       PRIMARY KEY,
    CALLID          varchar(64)  NOT NULL,
    ENDPOINTID      integer,
    ENDPOINTDN      varchar(255),
    CAUSE           integer,
    ADDED           timestamp,
    ADDED_TS        bigint       NOT NULL,
    REMOVED         timestamp,
    REMOVED_TS      bigint,
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

-- ---------------------------------------------------------------------------------------------------------------
-- Role gud: attached data
-- ---------------------------------------------------------------------------------------------------------------

-- Attached-data key/value changes of an interaction (ICON caps values, 255 by default).
CREATE TABLE IF NOT EXISTS G_USERDATA_HISTORY (
    ID              bigint       PRIMARY KEY,
    CALLID          varchar(64)  NOT NULL,
    KEYNAME         varchar(64)  NOT NULL,
    VALUE           varchar(255),
    ADDED           timestamp,
    ADDED_TS        bigint       NOT NULL,
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

-- ---------------------------------------------------------------------------------------------------------------
-- Role gls: agent login sessions and states
-- ---------------------------------------------------------------------------------------------------------------

-- One agent login session. LOGINSESSIONID is the same in both IDBs of an HA pair. STATE: 1 active, 2 ended.
CREATE TABLE IF NOT EXISTS G_LOGIN_SESSION (
    ID              bigint       PRIMARY KEY,
    LOGINSESSIONID  varchar(64)  NOT NULL,
    AGENTID         integer      NOT NULL,
    PLACEID         integer,
    SWITCHID        integer,
    STATE           integer      NOT NULL,
    CREATED         timestamp,
    CREATED_TS      bigint       NOT NULL,
    TERMINATED      timestamp,
    TERMINATED_TS   bigint,
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

-- Which endpoints (DNs, queues) a login session used. Not read yet.
CREATE TABLE IF NOT EXISTS GX_SESSION_ENDPOINT (
    ID              bigint       PRIMARY KEY,
    LOGINSESSIONID  varchar(64)  NOT NULL,
    ENDPOINTID      integer,
    ENDPOINTDN      varchar(255),
    CREATED         timestamp,
    CREATED_TS      bigint       NOT NULL,
    TERMINATED      timestamp,
    TERMINATED_TS   bigint,
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

-- Agent state changes, numbered by SEQ within the login session. STATE: 1 ready, 2 not ready, 3 after-call work
-- (CALLID names the call it follows), 4 busy, 5 logged out.
CREATE TABLE IF NOT EXISTS G_AGENT_STATE_HISTORY (
    ID              bigint       PRIMARY KEY,
    LOGINSESSIONID  varchar(64)  NOT NULL,
    AGENTID         integer      NOT NULL,
    ENDPOINTID      integer,
    SEQ             integer      NOT NULL,
    STATE           integer      NOT NULL,
    WORKMODE        integer,
    CALLID          varchar(64),
    ADDED           timestamp,
    ADDED_TS        bigint       NOT NULL,
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
CREATE INDEX IF NOT EXISTS G_AGENT_STATE_HISTORY_GSYS_SEQ       ON G_AGENT_STATE_HISTORY (GSYS_SEQ);
CREATE INDEX IF NOT EXISTS G_AGENT_STATE_HISTORY_GSYS_USEQ      ON G_AGENT_STATE_HISTORY (GSYS_USEQ);
CREATE INDEX IF NOT EXISTS G_AGENT_STATE_HISTORY_LOGINSESSIONID ON G_AGENT_STATE_HISTORY (LOGINSESSIONID);

-- Reason code of a not-ready state: SEQ is the G_AGENT_STATE_HISTORY.SEQ of the state it explains.
CREATE TABLE IF NOT EXISTS G_AGENT_STATE_RC (
    ID              bigint       PRIMARY KEY,
    LOGINSESSIONID  varchar(64)  NOT NULL,
    AGENTID         integer      NOT NULL,
    SEQ             integer      NOT NULL,
    REASONCODE      varchar(64)  NOT NULL,
    ADDED           timestamp,
    ADDED_TS        bigint       NOT NULL,
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

-- ---------------------------------------------------------------------------------------------------------------
-- Role cfg: configuration (ID = Configuration Server DBID, the same in every IDB)
-- ---------------------------------------------------------------------------------------------------------------

-- Agents.
CREATE TABLE IF NOT EXISTS GC_AGENT (
    ID              integer      PRIMARY KEY,
    TENANTID        integer,
    USERNAME        varchar(255) NOT NULL,
    FIRSTNAME       varchar(255),
    LASTNAME        varchar(255),
    EMPLOYEEID      varchar(64),
    STATUS          integer,
    CREATED         timestamp,
    CREATED_TS      bigint,
    DELETED         timestamp,
    DELETED_TS      bigint,
    LASTCHANGE      timestamp,
    LASTCHANGE_TS   bigint,
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

-- DNs: TYPE 1 extension, 2 ACD queue, 3 routing point, 4 virtual queue.
CREATE TABLE IF NOT EXISTS GC_ENDPOINT (
    ID              integer      PRIMARY KEY,
    TENANTID        integer,
    SWITCHID        integer,
    DN              varchar(255) NOT NULL,
    TYPE            integer      NOT NULL,
    STATUS          integer,
    CREATED         timestamp,
    CREATED_TS      bigint,
    DELETED         timestamp,
    DELETED_TS      bigint,
    LASTCHANGE      timestamp,
    LASTCHANGE_TS   bigint,
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
    CREATED_TS      bigint,
    DELETED         timestamp,
    DELETED_TS      bigint,
    LASTCHANGE      timestamp,
    LASTCHANGE_TS   bigint,
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

-- Agent / place / DN groups.
CREATE TABLE IF NOT EXISTS GC_GROUP (
    ID              integer      PRIMARY KEY,
    TENANTID        integer,
    NAME            varchar(255) NOT NULL,
    GROUPTYPE       integer,
    STATUS          integer,
    CREATED         timestamp,
    CREATED_TS      bigint,
    DELETED         timestamp,
    DELETED_TS      bigint,
    LASTCHANGE      timestamp,
    LASTCHANGE_TS   bigint,
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

-- Agent group membership: one row per membership; DELETED_TS ends it (the row stays, so history is kept).
CREATE TABLE IF NOT EXISTS GCX_GROUP_AGENT (
    ID              integer      PRIMARY KEY,
    GROUPID         integer      NOT NULL,
    AGENTID         integer      NOT NULL,
    STATUS          integer,
    CREATED         timestamp,
    CREATED_TS      bigint       NOT NULL,
    DELETED         timestamp,
    DELETED_TS      bigint,
    LASTCHANGE      timestamp,
    LASTCHANGE_TS   bigint,
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

-- Switches. Not read yet.
CREATE TABLE IF NOT EXISTS GC_SWITCH (
    ID              integer      PRIMARY KEY,
    TENANTID        integer,
    NAME            varchar(255) NOT NULL,
    SWITCHTYPE      integer,
    STATUS          integer,
    CREATED         timestamp,
    CREATED_TS      bigint,
    DELETED         timestamp,
    DELETED_TS      bigint,
    LASTCHANGE      timestamp,
    LASTCHANGE_TS   bigint,
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
    CREATED_TS      bigint,
    DELETED         timestamp,
    DELETED_TS      bigint,
    LASTCHANGE      timestamp,
    LASTCHANGE_TS   bigint,
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
-- DSCONN_TYPE: 1 first connection, 2 reconnect, 3 data source restart, 4 CTI link reconnect, 5 switchover to backup.
-- ICON_ETIME / DSCONN_ETIME are null while ICON runs / the connection is up. LEVENT_ITIME is the collector's
-- heartbeat: every row of this IDB for events up to that time has been committed before it (for a still-open
-- session, how far the IDB has progressed). All *TIME columns: UTC epoch seconds.
-- ccmart extracts G_DSS_GCC_PROVIDER and G_DSS_GLS_PROVIDER (read first, committed after the data tables of each
-- pass) for the per-slice HA merge; the other three are not read.
-- ---------------------------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS G_DSS_CFG_PROVIDER (
    DSS_ID          bigint       PRIMARY KEY,
    ICON_DBID       integer      NOT NULL,
    DS_DBID         integer,
    DS_DBID_PRIM    integer,
    DS2_DBID        integer,
    DS_TYPE         integer,
    ICON_STIME      bigint,
    DSCONN_STIME    bigint,
    DSCONN_TYPE     integer,
    ICON_ETIME      bigint,
    DSCONN_ETIME    bigint,
    FEVENT_ITIME    bigint,
    FEVENT_DSTIME   bigint,
    FEVENT_DSSEQ    bigint,
    LEVENT_ITIME    bigint,
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

CREATE TABLE IF NOT EXISTS G_DSS_GCC_PROVIDER (
    DSS_ID          bigint       PRIMARY KEY,
    ICON_DBID       integer      NOT NULL,
    DS_DBID         integer,
    DS_DBID_PRIM    integer,
    DS2_DBID        integer,
    DS_TYPE         integer,
    ICON_STIME      bigint,
    DSCONN_STIME    bigint,
    DSCONN_TYPE     integer,
    ICON_ETIME      bigint,
    DSCONN_ETIME    bigint,
    FEVENT_ITIME    bigint,
    FEVENT_DSTIME   bigint,
    FEVENT_DSSEQ    bigint,
    LEVENT_ITIME    bigint,
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

CREATE TABLE IF NOT EXISTS G_DSS_GLS_PROVIDER (
    DSS_ID          bigint       PRIMARY KEY,
    ICON_DBID       integer      NOT NULL,
    DS_DBID         integer,
    DS_DBID_PRIM    integer,
    DS2_DBID        integer,
    DS_TYPE         integer,
    ICON_STIME      bigint,
    DSCONN_STIME    bigint,
    DSCONN_TYPE     integer,
    ICON_ETIME      bigint,
    DSCONN_ETIME    bigint,
    FEVENT_ITIME    bigint,
    FEVENT_DSTIME   bigint,
    FEVENT_DSSEQ    bigint,
    LEVENT_ITIME    bigint,
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

CREATE TABLE IF NOT EXISTS G_DSS_GUD_PROVIDER (
    DSS_ID          bigint       PRIMARY KEY,
    ICON_DBID       integer      NOT NULL,
    DS_DBID         integer,
    DS_DBID_PRIM    integer,
    DS2_DBID        integer,
    DS_TYPE         integer,
    ICON_STIME      bigint,
    DSCONN_STIME    bigint,
    DSCONN_TYPE     integer,
    ICON_ETIME      bigint,
    DSCONN_ETIME    bigint,
    FEVENT_ITIME    bigint,
    FEVENT_DSTIME   bigint,
    FEVENT_DSSEQ    bigint,
    LEVENT_ITIME    bigint,
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

CREATE TABLE IF NOT EXISTS G_DSS_GOS_PROVIDER (
    DSS_ID          bigint       PRIMARY KEY,
    ICON_DBID       integer      NOT NULL,
    DS_DBID         integer,
    DS_DBID_PRIM    integer,
    DS2_DBID        integer,
    DS_TYPE         integer,
    ICON_STIME      bigint,
    DSCONN_STIME    bigint,
    DSCONN_TYPE     integer,
    ICON_ETIME      bigint,
    DSCONN_ETIME    bigint,
    FEVENT_ITIME    bigint,
    FEVENT_DSTIME   bigint,
    FEVENT_DSSEQ    bigint,
    LEVENT_ITIME    bigint,
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
