//! The floor every stage stands on: the shared vocabulary — group keys, days, the fence, the status the server
//! shows and the wire types of the appliance's protocols. Nothing here does I/O or imports another module of the
//! crate, so any stage may use it without creating a cycle (the layering test in `tests/it/layering.rs` holds
//! that). Each spelling on disk or on the wire is known in exactly one place: the type's own encoder and decoder.

pub mod day;
pub mod fence;
pub mod group;
pub mod status;

pub use day::{Day, DayError};
pub use fence::{Fence, PeerFence, Role, MAX_EPOCH};
pub use group::{GroupKey, GroupKeyError, GroupKind};
