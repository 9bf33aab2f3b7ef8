//! The floor every stage stands on: the shared vocabulary — group keys, days, the fence, the status the server
//! shows and the wire types of the appliance's protocols. Nothing here does I/O or imports another module of the
//! crate, so any stage may use it without creating a cycle (the layering test in `tests/it/layering.rs` holds
//! that). Each spelling on disk or on the wire is known in exactly one place: the type's own encoder and decoder.

pub mod day;
pub mod fence;
pub mod group;
pub mod status;
pub mod wire;

pub use day::{Day, DayError};
pub use fence::{Fence, PeerFence, Role, MAX_EPOCH};
pub use group::{GroupKey, GroupKeyError, GroupKind};

/// An error and every cause under it, on one line (`a: b: c`), for the places where the chain must survive as
/// text: status fields, API answers, logs. Messages follow the convention that a message does not repeat its
/// source, so each cause appears once.
pub fn report(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}
