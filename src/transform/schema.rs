//! The star schema the transform produces: table names, columns and partitioning. Column names are lower case
//! so that SQL written with the vendor's upper-case names (`SELECT START_TS FROM INTERACTION_FACT`) resolves
//! case-insensitively; `docs/schema.md` documents each column.

/// Type of a mart column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// 64-bit integer (keys, epoch seconds, durations in seconds, counts).
    Int,
    /// UTF-8 text.
    Text,
    /// 64-bit float, for ratios and averages (NULL when the denominator is zero).
    Float,
}

/// One mart table.
#[derive(Debug, Clone, Copy)]
pub struct MartTable {
    /// Table name (lower case).
    pub name: &'static str,
    /// Columns in row order; partitioned tables end with `day`.
    pub columns: &'static [(&'static str, ColumnKind)],
    /// Partitioned by `day` (YYYY-MM-DD, UTC); unpartitioned tables are replaced whole.
    pub partitioned: bool,
}

impl MartTable {
    /// Position of column `name`: a name the table lacks panics, so a misspelt name fails in every test that
    /// uses it instead of reading nothing.
    pub fn index(&self, name: &str) -> usize {
        match self.columns.iter().position(|(c, _)| *c == name) {
            Some(i) => i,
            None => panic!("mart table {} has no column {name}", self.name),
        }
    }
}

use ColumnKind::{Float, Int, Text};

/// One row per completed interaction.
pub const INTERACTION_FACT: MartTable = MartTable {
    name: "interaction_fact",
    columns: &[
        ("interaction_id", Int),
        ("media_server_ixn_guid", Text),
        ("interaction_type", Text),
        ("interaction_type_key", Int),
        ("media_type", Text),
        ("media_type_key", Int),
        ("source_address", Text),
        ("target_address", Text),
        ("start_ts", Int),
        ("end_ts", Int),
        ("duration", Int),
        ("start_date_time_key", Int),
        ("end_date_time_key", Int),
        ("switch_id", Int),
        ("source_idb", Text),
        ("data_quality", Text),
        ("day", Text),
    ],
    partitioned: true,
};

/// One row per resource (agent or queue) that handled an interaction.
pub const INTERACTION_RESOURCE_FACT: MartTable = MartTable {
    name: "interaction_resource_fact",
    columns: &[
        ("interaction_resource_id", Int),
        ("interaction_id", Int),
        ("media_server_ixn_guid", Text),
        ("resource_key", Int),
        ("resource_role", Text),
        ("technical_result", Text),
        ("technical_descriptor_key", Int),
        ("party_seq", Int),
        ("start_ts", Int),
        ("end_ts", Int),
        ("start_date_time_key", Int),
        ("mediation_duration", Int),
        ("ring_count", Int),
        ("ring_duration", Int),
        ("talk_count", Int),
        ("talk_duration", Int),
        ("hold_count", Int),
        ("hold_duration", Int),
        ("after_call_work_count", Int),
        ("after_call_work_duration", Int),
        ("received_from_ixn_resource_id", Int),
        ("day", Text),
    ],
    partitioned: true,
};

/// One row per agent state period.
pub const SM_RES_STATE_FACT: MartTable = MartTable {
    name: "sm_res_state_fact",
    columns: &[
        ("sm_res_state_fact_key", Int),
        ("resource_key", Int),
        ("login_session_id", Text),
        ("state_seq", Int),
        ("resource_state", Text),
        ("resource_state_key", Int),
        ("state_reason", Text),
        ("start_ts", Int),
        ("end_ts", Int),
        ("total_duration", Int),
        ("start_date_time_key", Int),
        ("day", Text),
    ],
    partitioned: true,
};

/// One row per interaction and configured attached-data key (`[transform] user_data_keys`): the last value set.
pub const INTERACTION_USER_DATA_FACT: MartTable = MartTable {
    name: "interaction_user_data_fact",
    columns: &[
        ("interaction_user_data_key", Int),
        ("interaction_id", Int),
        ("media_server_ixn_guid", Text),
        ("key_name", Text),
        ("value", Text),
        ("added_ts", Int),
        ("day", Text),
    ],
    partitioned: true,
};

/// One row per stay of an interaction in an ACD queue (time before reaching an agent, or before abandoning).
pub const MEDIATION_SEGMENT_FACT: MartTable = MartTable {
    name: "mediation_segment_fact",
    columns: &[
        ("mediation_segment_id", Int),
        ("interaction_id", Int),
        ("media_server_ixn_guid", Text),
        ("resource_key", Int),
        ("start_ts", Int),
        ("end_ts", Int),
        ("mediation_duration", Int),
        ("technical_result", Text),
        ("abandoned", Int),
        ("distributed", Int),
        ("start_date_time_key", Int),
        ("day", Text),
    ],
    partitioned: true,
};

/// One row per ended agent login session.
pub const SM_RES_SESSION_FACT: MartTable = MartTable {
    name: "sm_res_session_fact",
    columns: &[
        ("sm_res_session_fact_key", Int),
        ("resource_key", Int),
        ("login_session_id", Text),
        ("place_cfg_dbid", Int),
        ("start_ts", Int),
        ("end_ts", Int),
        ("total_duration", Int),
        ("start_date_time_key", Int),
        ("end_date_time_key", Int),
        ("day", Text),
    ],
    partitioned: true,
};

/// One row per ended not-ready period that has a reason code.
pub const SM_RES_STATE_REASON_FACT: MartTable = MartTable {
    name: "sm_res_state_reason_fact",
    columns: &[
        ("sm_res_state_reason_fact_key", Int),
        ("resource_key", Int),
        ("login_session_id", Text),
        ("state_seq", Int),
        ("reason_code", Text),
        ("resource_state_reason_key", Int),
        ("start_ts", Int),
        ("end_ts", Int),
        ("total_duration", Int),
        ("start_date_time_key", Int),
        ("day", Text),
    ],
    partitioned: true,
};

/// Columns of the queue aggregates (one row per queue and bucket with at least one offered interaction).
const AG2_QUEUE_COLUMNS: &[(&str, ColumnKind)] = &[
    ("ag2_queue_key", Int),
    ("resource_key", Int),
    ("date_time_key", Int),
    ("offered", Int),
    ("accepted", Int),
    ("abandoned", Int),
    ("abandoned_short", Int),
    ("accepted_within_sl", Int),
    ("accepted_wait_secs", Int),
    ("abandoned_wait_secs", Int),
    ("max_wait_secs", Int),
    ("service_level_threshold_secs", Int),
    ("short_abandon_threshold_secs", Int),
    ("avg_speed_of_answer_secs", Float),
    ("service_level_pct", Float),
    ("abandon_rate_pct", Float),
    ("day", Text),
];

/// Queue measures per 15-minute interval in which the interaction entered the queue.
pub const AG2_QUEUE_SUBHR: MartTable =
    MartTable { name: "ag2_queue_subhr", columns: AG2_QUEUE_COLUMNS, partitioned: true };
/// Queue measures per hour.
pub const AG2_QUEUE_HOUR: MartTable =
    MartTable { name: "ag2_queue_hour", columns: AG2_QUEUE_COLUMNS, partitioned: true };
/// Queue measures per UTC day.
pub const AG2_QUEUE_DAY: MartTable = MartTable { name: "ag2_queue_day", columns: AG2_QUEUE_COLUMNS, partitioned: true };

/// Columns of the agent aggregates (one row per agent and bucket with any activity).
const AG2_AGENT_COLUMNS: &[(&str, ColumnKind)] = &[
    ("ag2_agent_key", Int),
    ("resource_key", Int),
    ("date_time_key", Int),
    ("offered", Int),
    ("accepted", Int),
    ("redirected", Int),
    ("transferred", Int),
    ("talk_secs", Int),
    ("hold_secs", Int),
    ("hold_count", Int),
    ("after_call_work_secs", Int),
    ("after_call_work_count", Int),
    ("ready_secs", Int),
    ("not_ready_secs", Int),
    ("busy_secs", Int),
    ("after_call_work_state_secs", Int),
    ("engage_secs", Int),
    ("handle_secs", Int),
    ("avg_handle_secs", Float),
    ("occupancy_pct", Float),
    ("day", Text),
];

/// Agent measures per 15-minute interval.
pub const AG2_AGENT_SUBHR: MartTable =
    MartTable { name: "ag2_agent_subhr", columns: AG2_AGENT_COLUMNS, partitioned: true };
/// Agent measures per hour.
pub const AG2_AGENT_HOUR: MartTable =
    MartTable { name: "ag2_agent_hour", columns: AG2_AGENT_COLUMNS, partitioned: true };
/// Agent measures per UTC day.
pub const AG2_AGENT_DAY: MartTable = MartTable { name: "ag2_agent_day", columns: AG2_AGENT_COLUMNS, partitioned: true };

/// Agents, queues, routing points and extensions.
pub const RESOURCE: MartTable = MartTable {
    name: "resource_",
    columns: &[
        ("resource_key", Int),
        ("resource_type", Text),
        ("resource_name", Text),
        ("resource_cfg_dbid", Int),
        ("agent_first_name", Text),
        ("agent_last_name", Text),
        ("employee_id", Text),
        ("switch_id", Int),
    ],
    partitioned: false,
};

/// Agent groups (`GC_GROUP`), e.g. the team that staffs a queue.
pub const RESOURCE_GROUP: MartTable = MartTable {
    name: "resource_group",
    columns: &[("group_key", Int), ("group_name", Text), ("group_type", Text), ("group_cfg_dbid", Int)],
    partitioned: false,
};

/// Membership history: which agent (`resource_key`) belonged to which group from `start_ts` until `end_ts`
/// (exclusive; NULL while current). Join a fact's time into this range to report it in the group of its period.
pub const RESOURCE_GROUP_FACT: MartTable = MartTable {
    name: "resource_group_fact",
    columns: &[
        ("resource_group_fact_key", Int),
        ("resource_key", Int),
        ("group_key", Int),
        ("start_ts", Int),
        ("end_ts", Int),
        ("start_date_time_key", Int),
        ("end_date_time_key", Int),
        ("active", Int),
    ],
    partitioned: false,
};

/// Interaction types (Inbound, Outbound, Internal, Consult).
pub const INTERACTION_TYPE: MartTable = MartTable {
    name: "interaction_type",
    columns: &[("interaction_type_key", Int), ("interaction_type", Text)],
    partitioned: false,
};

/// Media types (Voice, Email, Chat).
pub const MEDIA_TYPE: MartTable =
    MartTable { name: "media_type", columns: &[("media_type_key", Int), ("media_type", Text)], partitioned: false };

/// Resource role and technical result combinations of `INTERACTION_RESOURCE_FACT`.
pub const TECHNICAL_DESCRIPTOR: MartTable = MartTable {
    name: "technical_descriptor",
    columns: &[("technical_descriptor_key", Int), ("resource_role", Text), ("technical_result", Text)],
    partitioned: false,
};

/// Agent states.
pub const RESOURCE_STATE: MartTable = MartTable {
    name: "resource_state",
    columns: &[("resource_state_key", Int), ("resource_state", Text)],
    partitioned: false,
};

/// Not-ready reason codes seen in the data.
pub const RESOURCE_STATE_REASON: MartTable = MartTable {
    name: "resource_state_reason",
    columns: &[("resource_state_reason_key", Int), ("reason_code", Text)],
    partitioned: false,
};

/// The 15-minute calendar.
pub const DATE_TIME: MartTable = MartTable {
    name: "date_time",
    columns: &[
        ("date_time_key", Int),
        ("cal_date", Text),
        ("cal_hour", Int),
        ("cal_minute", Int),
        ("label", Text),
        ("time_zone", Text),
        ("local_date", Text),
        ("local_hour", Int),
        ("local_minute", Int),
        ("local_day_of_week", Int),
        ("local_week", Int),
        ("local_month", Int),
        ("local_quarter", Int),
        ("local_year", Int),
        ("local_label", Text),
        ("day", Text),
    ],
    partitioned: true,
};

/// Every mart table.
pub const MART_TABLES: &[MartTable] = &[
    INTERACTION_FACT,
    INTERACTION_RESOURCE_FACT,
    INTERACTION_USER_DATA_FACT,
    MEDIATION_SEGMENT_FACT,
    SM_RES_SESSION_FACT,
    SM_RES_STATE_FACT,
    SM_RES_STATE_REASON_FACT,
    AG2_QUEUE_SUBHR,
    AG2_QUEUE_HOUR,
    AG2_QUEUE_DAY,
    AG2_AGENT_SUBHR,
    AG2_AGENT_HOUR,
    AG2_AGENT_DAY,
    RESOURCE,
    RESOURCE_GROUP,
    RESOURCE_GROUP_FACT,
    INTERACTION_TYPE,
    MEDIA_TYPE,
    TECHNICAL_DESCRIPTOR,
    RESOURCE_STATE,
    RESOURCE_STATE_REASON,
    DATE_TIME,
];

/// Look up a mart table by name, case-insensitively.
pub fn mart_table(name: &str) -> Option<&'static MartTable> {
    MART_TABLES.iter().find(|t| t.name.eq_ignore_ascii_case(name))
}

impl MartTable {
    /// The column that identifies a row: every mart table's first column (a surrogate key or an id), unique within
    /// the table. It is declared as the primary key in the SQL catalog so tools can draw the star schema.
    pub fn primary_key(&self) -> &'static str {
        self.columns[0].0
    }
}

/// A column whose values are another table's primary key: the star schema's joins, declared in the SQL catalog
/// (`pg_constraint`, `information_schema`) so BI tools draw them. Not enforced: a fact may name a key its
/// dimension does not list (e.g. `resource_key` 0 for a party without an agent or DN), so the catalog declares
/// them as PostgreSQL's `NOT VALID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForeignKey {
    /// Table holding the reference.
    pub table: &'static str,
    /// Referencing column of `table`.
    pub column: &'static str,
    /// Referenced table; the referenced column is its [`MartTable::primary_key`].
    pub references: &'static str,
}

const fn fk(table: &'static str, column: &'static str, references: &'static str) -> ForeignKey {
    ForeignKey { table, column, references }
}

/// Every declared join of the star schema (see `docs/schema.md`, the `→` in each table's column list).
pub const FOREIGN_KEYS: &[ForeignKey] = &[
    fk("interaction_fact", "interaction_type_key", "interaction_type"),
    fk("interaction_fact", "media_type_key", "media_type"),
    fk("interaction_fact", "start_date_time_key", "date_time"),
    fk("interaction_fact", "end_date_time_key", "date_time"),
    fk("interaction_resource_fact", "interaction_id", "interaction_fact"),
    fk("interaction_resource_fact", "resource_key", "resource_"),
    fk("interaction_resource_fact", "technical_descriptor_key", "technical_descriptor"),
    fk("interaction_resource_fact", "start_date_time_key", "date_time"),
    fk("interaction_user_data_fact", "interaction_id", "interaction_fact"),
    fk("mediation_segment_fact", "interaction_id", "interaction_fact"),
    fk("mediation_segment_fact", "resource_key", "resource_"),
    fk("mediation_segment_fact", "start_date_time_key", "date_time"),
    fk("sm_res_session_fact", "resource_key", "resource_"),
    fk("sm_res_session_fact", "start_date_time_key", "date_time"),
    fk("sm_res_session_fact", "end_date_time_key", "date_time"),
    fk("sm_res_state_fact", "resource_key", "resource_"),
    fk("sm_res_state_fact", "resource_state_key", "resource_state"),
    fk("sm_res_state_fact", "start_date_time_key", "date_time"),
    fk("sm_res_state_reason_fact", "resource_key", "resource_"),
    fk("sm_res_state_reason_fact", "resource_state_reason_key", "resource_state_reason"),
    fk("sm_res_state_reason_fact", "start_date_time_key", "date_time"),
    fk("ag2_queue_subhr", "resource_key", "resource_"),
    fk("ag2_queue_subhr", "date_time_key", "date_time"),
    fk("ag2_queue_hour", "resource_key", "resource_"),
    fk("ag2_queue_hour", "date_time_key", "date_time"),
    fk("ag2_queue_day", "resource_key", "resource_"),
    fk("ag2_queue_day", "date_time_key", "date_time"),
    fk("ag2_agent_subhr", "resource_key", "resource_"),
    fk("ag2_agent_subhr", "date_time_key", "date_time"),
    fk("ag2_agent_hour", "resource_key", "resource_"),
    fk("ag2_agent_hour", "date_time_key", "date_time"),
    fk("ag2_agent_day", "resource_key", "resource_"),
    fk("ag2_agent_day", "date_time_key", "date_time"),
    fk("resource_group_fact", "resource_key", "resource_"),
    fk("resource_group_fact", "group_key", "resource_group"),
    fk("resource_group_fact", "start_date_time_key", "date_time"),
    fk("resource_group_fact", "end_date_time_key", "date_time"),
];

/// The foreign keys between fact tables (both partitioned by day): the references inside one group's facts that
/// move with a key when staging resolves a key collision (see `staging::KeyReferences`).
pub fn fact_key_references() -> crate::staging::KeyReferences {
    crate::staging::KeyReferences::new(FOREIGN_KEYS.iter().filter_map(|k| {
        let (from, to) = (mart_table(k.table)?, mart_table(k.references)?);
        (from.partitioned && to.partitioned).then(|| (to.name.to_string(), from.name.to_string(), from.index(k.column)))
    }))
}

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn every_foreign_key_joins_existing_columns_of_the_same_type() {
        for k in FOREIGN_KEYS {
            let t = mart_table(k.table).unwrap_or_else(|| panic!("{k:?}: no table"));
            let target = mart_table(k.references).unwrap_or_else(|| panic!("{k:?}: no referenced table"));
            let from = t.columns[t.index(k.column)].1;
            let to = target.columns[target.index(target.primary_key())].1;
            assert_eq!(from, to, "{k:?}");
            assert_ne!(t.index(k.column), 0, "{k:?}: a primary key is not also a reference here");
        }
    }

    #[test]
    fn every_key_column_naming_a_dimension_is_declared() {
        // A column named like another table's primary key (`resource_key`, `…_date_time_key`) is a join the
        // catalog must declare; a missing declaration would hide it from tools.
        for t in MART_TABLES {
            for (c, _) in &t.columns[1..] {
                let target = MART_TABLES.iter().find(|d| {
                    d.name != t.name
                        && !d.name.starts_with("ag2_")
                        && (*c == d.primary_key() || c.ends_with(&format!("_{}", d.primary_key())))
                });
                if let Some(d) = target {
                    assert!(
                        FOREIGN_KEYS.contains(&fk(t.name, c, d.name)),
                        "{}.{c} names {}'s key but is not declared",
                        t.name,
                        d.name
                    );
                }
            }
        }
    }
}
