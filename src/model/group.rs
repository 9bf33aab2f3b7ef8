//! Staging groups: the unit the merge and the transform work on. Every staged row, fact and dirty mark is filed
//! under a group key; the key's spelling (`I:<CALLID>`, `Z:AGQ:<day>`, …) is what staging stores and orders by.
//! [`GroupKey`]'s `Display` and `FromStr` are the only code that knows that spelling; they reproduce the bytes
//! ccmart has always written, so data on disk and key order are unchanged.

use super::day::{Day, DayError};
use std::fmt;
use std::str::FromStr;

/// What a staging group is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupKey {
    /// One interaction, known by its `CALLID` in both IDBs of a pair: `I:<CALLID>`.
    Interaction(String),
    /// One agent login session, known by agent and login time (the same in both IDBs whatever session id each
    /// ICON gives it): `S:<AGENTID>@<CREATED_TS>`.
    LoginSession {
        /// The agent's `GC_AGENT.ID`.
        agent: i64,
        /// Login time (epoch seconds).
        created: i64,
    },
    /// One IDB's rows of a login session whose `G_LOGIN_SESSION` row is not staged yet: `S:#<IDB>#<session id>`.
    /// The transform makes no facts of it; the rows move to their [`GroupKey::LoginSession`] when it arrives.
    UnlinkedSessionRows {
        /// The IDB that holds the rows.
        idb: String,
        /// The session id that IDB uses.
        session_id: String,
    },
    /// One configuration table, merged whole: `C:<TABLE>`.
    Configuration(String),
    /// The `DATE_TIME` rows of one day: `D:<day>`.
    CalendarDay(Day),
    /// Every session-control row of every IDB, read by the merge and never transformed: `K:`.
    SessionControl,
    /// The queue aggregates of one day: `Z:AGQ:<day>`.
    QueueAggregateDay(Day),
    /// The agent aggregates of one day: `Z:AGA:<day>`.
    AgentAggregateDay(Day),
    /// The rows of the fixed dimensions (interaction and media types, technical descriptors, agent states):
    /// `X:dimensions`.
    FixedDimensions,
    /// The `RESOURCE_STATE_REASON` row of one reason code: `R:<code>`.
    ReasonDimension(String),
}

/// The kinds of [`GroupKey`], for scans over every group of one kind (keys of a kind share a prefix on disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKind {
    /// [`GroupKey::Interaction`].
    Interaction,
    /// [`GroupKey::LoginSession`] and [`GroupKey::UnlinkedSessionRows`].
    LoginSession,
    /// [`GroupKey::Configuration`].
    Configuration,
    /// [`GroupKey::CalendarDay`].
    CalendarDay,
    /// [`GroupKey::SessionControl`].
    SessionControl,
    /// [`GroupKey::QueueAggregateDay`].
    QueueAggregateDay,
    /// [`GroupKey::AgentAggregateDay`].
    AgentAggregateDay,
    /// [`GroupKey::FixedDimensions`].
    FixedDimensions,
    /// [`GroupKey::ReasonDimension`].
    ReasonDimension,
}

impl GroupKind {
    /// The prefix every key of this kind starts with on disk.
    pub fn prefix(self) -> &'static str {
        match self {
            GroupKind::Interaction => "I:",
            GroupKind::LoginSession => "S:",
            GroupKind::Configuration => "C:",
            GroupKind::CalendarDay => "D:",
            GroupKind::SessionControl => "K:",
            GroupKind::QueueAggregateDay => "Z:AGQ:",
            GroupKind::AgentAggregateDay => "Z:AGA:",
            GroupKind::FixedDimensions => "X:dimensions",
            GroupKind::ReasonDimension => "R:",
        }
    }
}

/// Marks an unlinked session group inside the login-session prefix.
const UNLINKED: &str = "#";

/// A stored group key that is none of ccmart's (a damaged store, or one written by a newer version).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{key}' is not a staging group key: {reason}")]
pub struct GroupKeyError {
    /// The key as stored (lossy UTF-8).
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

impl GroupKey {
    /// The kind of group.
    pub fn kind(&self) -> GroupKind {
        match self {
            GroupKey::Interaction(_) => GroupKind::Interaction,
            GroupKey::LoginSession { .. } | GroupKey::UnlinkedSessionRows { .. } => GroupKind::LoginSession,
            GroupKey::Configuration(_) => GroupKind::Configuration,
            GroupKey::CalendarDay(_) => GroupKind::CalendarDay,
            GroupKey::SessionControl => GroupKind::SessionControl,
            GroupKey::QueueAggregateDay(_) => GroupKind::QueueAggregateDay,
            GroupKey::AgentAggregateDay(_) => GroupKind::AgentAggregateDay,
            GroupKey::FixedDimensions => GroupKind::FixedDimensions,
            GroupKey::ReasonDimension(_) => GroupKind::ReasonDimension,
        }
    }

    /// The interaction's `CALLID`, for an interaction group.
    pub fn callid(&self) -> Option<&str> {
        match self {
            GroupKey::Interaction(c) => Some(c),
            _ => None,
        }
    }

    /// A login session's natural key, `<AGENTID>@<CREATED_TS>`: its group key after the prefix, and what the
    /// surrogate keys of its state and reason facts are derived from.
    pub fn session_identity(&self) -> Option<String> {
        match self {
            GroupKey::LoginSession { agent, created } => Some(format!("{agent}@{created}")),
            _ => None,
        }
    }

    /// The key as staging stores it.
    pub fn encode(&self) -> String {
        self.to_string()
    }

    /// Decodes a key as staging stores it.
    pub fn decode(bytes: &[u8]) -> Result<GroupKey, GroupKeyError> {
        let text = std::str::from_utf8(bytes).map_err(|_| GroupKeyError {
            key: String::from_utf8_lossy(bytes).into_owned(),
            reason: "not UTF-8".into(),
        })?;
        text.parse()
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = self.kind().prefix();
        match self {
            GroupKey::Interaction(callid) => write!(f, "{prefix}{callid}"),
            GroupKey::LoginSession { .. } => write!(f, "{prefix}{}", self.session_identity().unwrap_or_default()),
            GroupKey::UnlinkedSessionRows { idb, session_id } => write!(f, "{prefix}{UNLINKED}{idb}#{session_id}"),
            GroupKey::Configuration(table) => write!(f, "{prefix}{table}"),
            GroupKey::CalendarDay(day) | GroupKey::QueueAggregateDay(day) | GroupKey::AgentAggregateDay(day) => {
                write!(f, "{prefix}{day}")
            }
            GroupKey::SessionControl | GroupKey::FixedDimensions => write!(f, "{prefix}"),
            GroupKey::ReasonDimension(code) => write!(f, "{prefix}{code}"),
        }
    }
}

impl FromStr for GroupKey {
    type Err = GroupKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| GroupKeyError { key: s.to_string(), reason: reason.to_string() };
        let day = |rest: &str| rest.parse::<Day>().map_err(|e: DayError| bad(&e.to_string()));
        let after = |kind: GroupKind| s.strip_prefix(kind.prefix());
        if let Some(callid) = after(GroupKind::Interaction) {
            return Ok(GroupKey::Interaction(callid.to_string()));
        }
        if let Some(rest) = after(GroupKind::LoginSession) {
            if let Some(unlinked) = rest.strip_prefix(UNLINKED) {
                let (idb, session_id) =
                    unlinked.split_once('#').ok_or_else(|| bad("an unlinked session needs `#<IDB>#<id>`"))?;
                return Ok(GroupKey::UnlinkedSessionRows { idb: idb.into(), session_id: session_id.into() });
            }
            let (agent, created) =
                rest.split_once('@').ok_or_else(|| bad("a login session needs `<agent>@<login>`"))?;
            let int = |t: &str| t.parse::<i64>().map_err(|_| bad(&format!("'{t}' is not an integer")));
            return Ok(GroupKey::LoginSession { agent: int(agent)?, created: int(created)? });
        }
        if let Some(table) = after(GroupKind::Configuration) {
            return Ok(GroupKey::Configuration(table.to_string()));
        }
        if let Some(rest) = after(GroupKind::CalendarDay) {
            return Ok(GroupKey::CalendarDay(day(rest)?));
        }
        if s == GroupKind::SessionControl.prefix() {
            return Ok(GroupKey::SessionControl);
        }
        if let Some(rest) = after(GroupKind::QueueAggregateDay) {
            return Ok(GroupKey::QueueAggregateDay(day(rest)?));
        }
        if let Some(rest) = after(GroupKind::AgentAggregateDay) {
            return Ok(GroupKey::AgentAggregateDay(day(rest)?));
        }
        if s == GroupKind::FixedDimensions.prefix() {
            return Ok(GroupKey::FixedDimensions);
        }
        if let Some(code) = after(GroupKind::ReasonDimension) {
            return Ok(GroupKey::ReasonDimension(code.to_string()));
        }
        Err(bad("unknown kind"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_spells_as_it_always_has_and_decodes_back() {
        let day: Day = "2026-12-01".parse().unwrap();
        let cases = [
            (GroupKey::Interaction("CALL-1".into()), "I:CALL-1"),
            (GroupKey::Interaction("a:b@c#d".into()), "I:a:b@c#d"),
            (GroupKey::LoginSession { agent: 17, created: 1_764_547_200 }, "S:17@1764547200"),
            (GroupKey::UnlinkedSessionRows { idb: "idb-a1".into(), session_id: "77#x".into() }, "S:#idb-a1#77#x"),
            (GroupKey::Configuration("GC_AGENT".into()), "C:GC_AGENT"),
            (GroupKey::CalendarDay(day), "D:2026-12-01"),
            (GroupKey::SessionControl, "K:"),
            (GroupKey::QueueAggregateDay(day), "Z:AGQ:2026-12-01"),
            (GroupKey::AgentAggregateDay(day), "Z:AGA:2026-12-01"),
            (GroupKey::FixedDimensions, "X:dimensions"),
            (GroupKey::ReasonDimension("Break".into()), "R:Break"),
        ];
        for (key, spelt) in cases {
            assert_eq!(key.encode(), spelt);
            assert_eq!(GroupKey::decode(spelt.as_bytes()).unwrap(), key, "{spelt}");
            assert!(spelt.starts_with(key.kind().prefix()));
        }
    }

    #[test]
    fn keys_that_are_not_ccmarts_are_refused_with_the_reason() {
        for bad in ["", "X:1", "S:abc", "S:1@x", "S:#nohash", "D:2026-13-01", "Z:AGQ:", "Z:1", "K:x", "X:other"] {
            let e = bad.parse::<GroupKey>().unwrap_err();
            assert_eq!(e.key, bad);
        }
        assert!(GroupKey::decode(&[0xff, 0xfe]).unwrap_err().reason.contains("UTF-8"));
    }
}
