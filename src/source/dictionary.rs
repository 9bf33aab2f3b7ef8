//! The IDB's own dictionary of code values (`G_DICTIONARY`), read with the schema check at every (re)connection.
//!
//! ICON's initialisation scripts fill `G_DICTIONARY` with the meaning of the codes its tables use: one row per
//! (dictionary type, code) with a name. The vendor documents the table as four columns — the dictionary type, the
//! code, its name and a description — but the column names could not be established, so ccmart reads the first
//! three columns **by position**.
//!
//! What ccmart does with it:
//! - **party states** (dictionary 8; ccmart's own numbering is an assumption): the IDB's codes are matched to the
//!   states ccmart measures by their names. When every state ccmart needs is named by exactly one code, the IDB's
//!   codes are translated to ccmart's as rows are extracted (`G_PARTY.STATE`, `G_PARTY_HISTORY.STATE`), and a code
//!   with no meaning ccmart reads quarantines its row naming the dictionary entry. When the names do not settle it,
//!   ccmart keeps its own numbering and says so.
//! - **party types** (dictionary 9; verified): each code's name is compared with the vendor's meaning, so a site
//!   whose ICON release differs sees it on the first day.
//!
//! The outcome is part of the schema check: `/v1/status` (`code_dictionary` per IDB) and `ccmart check-idb`.

use super::contract::{party_state, party_type};

pub use crate::model::status::{CodeDictionaryCheck, DictionaryEntry};
use std::collections::BTreeMap;

/// The query that reads the dictionary; only its first three columns (type, code, name) are used.
pub const DICTIONARY_QUERY: &str = "SELECT * FROM G_DICTIONARY ORDER BY 1, 2";

/// The vendor's dictionary type of party states (`G_PARTY.STATE`, `G_PARTY_HISTORY.STATE`).
pub const PARTY_STATE_DICTIONARY: i64 = 8;
/// The vendor's dictionary type of party types (`G_PARTY.TYPE`).
pub const PARTY_TYPE_DICTIONARY: i64 = 9;

/// The columns whose codes come from the party-state dictionary.
pub const PARTY_STATE_COLUMNS: &[(&str, &str)] = &[("G_PARTY", "STATE"), ("G_PARTY_HISTORY", "STATE")];

/// The party states ccmart measures, with the name prefixes that identify each in a dictionary.
const PARTY_STATE_NAMES: &[(i64, &str, &[&str])] = &[
    (party_state::DIALING, "dialing", &["dial"]),
    (party_state::QUEUED, "queued", &["queue", "wait"]),
    (party_state::ALERTING, "alerting", &["alert", "ring"]),
    (party_state::CONNECTED, "connected", &["connect", "establish", "talk", "answer"]),
    (party_state::HELD, "held", &["hold", "held", "onhold"]),
    (party_state::RELEASED, "released", &["releas", "terminat", "disconnect", "delet", "clear", "gone"]),
];

/// The vendor's party types, with the name prefixes that identify each.
const PARTY_TYPE_NAMES: &[(i64, &str, &[&str])] = &[
    (party_type::UNKNOWN, "unknown", &["unknown"]),
    (party_type::INTERNAL, "internal", &["internal"]),
    (party_type::EXTERNAL, "external", &["external"]),
    (party_type::MM_PLACE, "multimedia place", &["place", "mmplace", "mm place"]),
    (
        party_type::MM_INTERACTION_QUEUE,
        "multimedia interaction queue",
        &["interactionqueue", "mm interaction queue", "queue", "mmqueue"],
    ),
    (party_type::MM_WORKBIN, "multimedia workbin", &["workbin", "mm workbin", "mmworkbin"]),
    (
        party_type::MM_ROUTING_STRATEGY,
        "multimedia routing strategy",
        &["strategy", "routingstrategy", "mm routing strategy", "mmstrategy"],
    ),
];

impl CodeDictionaryCheck {
    /// The check of an IDB without a dictionary: ccmart's numbering is kept.
    pub fn absent() -> Self {
        CodeDictionaryCheck {
            findings: vec!["G_DICTIONARY is missing or unreadable: ccmart's own code numbering is used".into()],
            ..Default::default()
        }
    }

    /// Builds the check from the dictionary's rows (first three columns: type, code, name, as text).
    pub fn from_rows(rows: &[Vec<Option<String>>]) -> Self {
        let mut by_type: BTreeMap<i64, Vec<DictionaryEntry>> = BTreeMap::new();
        for r in rows {
            let int = |i: usize| r.get(i).cloned().flatten().and_then(|v| v.trim().parse::<i64>().ok());
            let (Some(ty), Some(code), Some(name)) = (int(0), int(1), r.get(2).cloned().flatten()) else { continue };
            by_type.entry(ty).or_default().push(DictionaryEntry { code, name: name.trim().to_string() });
        }
        let mut check = CodeDictionaryCheck { present: true, ..Default::default() };
        match by_type.get(&PARTY_STATE_DICTIONARY) {
            None => check.findings.push(format!(
                "dictionary {PARTY_STATE_DICTIONARY} (party state) is empty: ccmart's own party-state numbering is used"
            )),
            Some(entries) => check.party_states(entries),
        }
        match by_type.get(&PARTY_TYPE_DICTIONARY) {
            None => check.findings.push(format!("dictionary {PARTY_TYPE_DICTIONARY} (party type) is empty")),
            Some(entries) => check.party_types(entries),
        }
        check
    }

    fn party_states(&mut self, entries: &[DictionaryEntry]) {
        let mut translation = BTreeMap::new();
        let mut unread = Vec::new();
        let mut found: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        let before = self.findings.len();
        let mut codes: Vec<i64> = entries.iter().map(|e| e.code).collect();
        codes.sort_unstable();
        for w in codes.windows(2).filter(|w| w[0] == w[1]) {
            self.findings.push(format!("party-state code {} is in G_DICTIONARY more than once", w[0]));
        }
        for e in entries {
            match meaning(&e.name, PARTY_STATE_NAMES) {
                Some(ours) => {
                    found.entry(ours).or_default().push(e.code);
                    translation.insert(e.code, ours);
                }
                None => unread.push(e.clone()),
            }
        }
        for (ours, name, _) in PARTY_STATE_NAMES {
            match found.get(ours).map(Vec::as_slice) {
                Some([_]) => {}
                Some(codes) => self.findings.push(format!("party state '{name}' is named by several codes {codes:?}")),
                None => self.findings.push(format!("no party-state code is named like '{name}'")),
            }
        }
        if self.findings.len() > before {
            self.findings.push("the party-state names do not settle the numbering: ccmart's own is used".into());
            return;
        }
        for e in &unread {
            self.findings.push(format!(
                "party-state code {} ('{}') has no meaning ccmart reads: rows holding it are quarantined",
                e.code, e.name
            ));
        }
        // The IDB numbers as ccmart does and names nothing else: no translation (and no per-row work) needed.
        if unread.is_empty() && translation.iter().all(|(theirs, ours)| theirs == ours) {
            return;
        }
        if translation.iter().any(|(theirs, ours)| theirs != ours) {
            self.findings.push(format!("party-state codes translated to ccmart's: {translation:?}"));
        }
        self.party_state_translation = translation;
        self.party_state_unread = unread;
    }

    fn party_types(&mut self, entries: &[DictionaryEntry]) {
        for (code, name, _) in PARTY_TYPE_NAMES {
            match entries.iter().find(|e| e.code == *code) {
                Some(e) if meaning(&e.name, PARTY_TYPE_NAMES) == Some(*code) => {}
                Some(e) => self
                    .findings
                    .push(format!("party type {code} is '{}' in G_DICTIONARY, ccmart reads it as {name}", e.name)),
                None if *code <= party_type::EXTERNAL => {
                    self.findings.push(format!("party type {code} ({name}) is not in G_DICTIONARY"))
                }
                None => {}
            }
        }
    }

    /// The code ccmart reads for an IDB party-state code: translated when the dictionary settled the numbering;
    /// `Err` with the dictionary's name for a code ccmart reads no meaning into.
    pub fn party_state(&self, code: i64) -> Result<i64, String> {
        if self.party_state_translation.is_empty() {
            return Ok(code);
        }
        if let Some(ours) = self.party_state_translation.get(&code) {
            return Ok(*ours);
        }
        Err(match self.party_state_unread.iter().find(|e| e.code == code) {
            Some(e) => format!("party-state code {code} ('{}' in G_DICTIONARY) has no meaning ccmart reads", e.name),
            None => format!("party-state code {code} is not in G_DICTIONARY"),
        })
    }
}

/// The meaning a dictionary name has among `names` (code, label, prefixes): the one whose prefix starts the name
/// or one of its words, if exactly one does.
fn meaning(name: &str, names: &[(i64, &str, &[&str])]) -> Option<i64> {
    let lower = name.to_lowercase();
    let compact: String = lower.chars().filter(|c| c.is_alphanumeric()).collect();
    let words: Vec<&str> = lower.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
    let matches: Vec<i64> = names
        .iter()
        .filter(|(_, _, prefixes)| {
            prefixes.iter().any(|p| {
                let p_compact: String = p.chars().filter(|c| c.is_alphanumeric()).collect();
                compact.starts_with(&p_compact) || words.iter().any(|w| w.starts_with(p))
            })
        })
        .map(|(code, _, _)| *code)
        .collect();
    match matches.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(entries: &[(i64, i64, &str)]) -> Vec<Vec<Option<String>>> {
        entries.iter().map(|(t, c, n)| vec![Some(t.to_string()), Some(c.to_string()), Some(n.to_string())]).collect()
    }

    const VENDOR_TYPES: &[(i64, i64, &str)] = &[
        (9, 0, "Unknown"),
        (9, 1, "Internal"),
        (9, 2, "External"),
        (9, 3, "MM Place"),
        (9, 4, "MM Interaction Queue"),
        (9, 5, "MM Interaction Workbin"),
        (9, 6, "MM Routing Strategy"),
    ];

    #[test]
    fn ccmarts_numbering_needs_no_translation() {
        let mut entries = vec![
            (8, 1, "Dialing"),
            (8, 2, "Queued"),
            (8, 3, "Alerting"),
            (8, 4, "Connected"),
            (8, 5, "Held"),
            (8, 6, "Released"),
        ];
        entries.extend_from_slice(VENDOR_TYPES);
        let c = CodeDictionaryCheck::from_rows(&rows(&entries));
        assert!(c.findings.is_empty(), "{:?}", c.findings);
        assert_eq!(c.party_state(3), Ok(party_state::ALERTING));
        assert!(c.party_state_translation.is_empty(), "the same numbering: nothing to translate");
    }

    #[test]
    fn another_numbering_is_translated_and_unknown_names_quarantine() {
        let mut entries = vec![
            (8, 0, "Unknown"),
            (8, 10, "Ringing"),
            (8, 11, "Talking"),
            (8, 12, "OnHold"),
            (8, 13, "Dialing"),
            (8, 14, "Queued"),
            (8, 15, "Disconnected"),
        ];
        entries.extend_from_slice(VENDOR_TYPES);
        let c = CodeDictionaryCheck::from_rows(&rows(&entries));
        assert_eq!(c.party_state(10), Ok(party_state::ALERTING));
        assert_eq!(c.party_state(11), Ok(party_state::CONNECTED));
        assert_eq!(c.party_state(12), Ok(party_state::HELD));
        assert_eq!(c.party_state(15), Ok(party_state::RELEASED), "'Disconnected' is not 'connected'");
        assert!(c.party_state(0).unwrap_err().contains("'Unknown'"));
        assert!(c.party_state(99).unwrap_err().contains("not in G_DICTIONARY"));
    }

    #[test]
    fn names_that_do_not_settle_keep_ccmarts_numbering_and_say_so() {
        let c = CodeDictionaryCheck::from_rows(&rows(&[(8, 1, "Ringing"), (8, 2, "Alerting"), (9, 1, "Internal")]));
        assert_eq!(c.party_state(7), Ok(7), "no translation");
        assert!(c.findings.iter().any(|f| f.contains("several codes")), "{:?}", c.findings);
        assert!(c.findings.iter().any(|f| f.contains("ccmart's own is used")));
    }

    #[test]
    fn a_party_type_named_otherwise_is_reported() {
        let c = CodeDictionaryCheck::from_rows(&rows(&[(9, 1, "External"), (9, 2, "Internal")]));
        assert!(c.findings.iter().any(|f| f.contains("party type 1 is 'External'")), "{:?}", c.findings);
        assert!(CodeDictionaryCheck::absent().findings[0].contains("missing"));
    }
}
