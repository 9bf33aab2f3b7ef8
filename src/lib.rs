//! ccmart — a contact-center reporting appliance.
//!
//! Data flows one way through the stages (see `DESIGN.md`): IDBs ([`source`]) → [`extract`] → [`staging`] →
//! [`merge`] → [`transform`] → [`mart`] → [`query`] → [`serve`]. [`pipeline`] is the only module that knows all
//! stages; [`sim`] plays the contact center and its ICON collectors; [`config`] is the appliance configuration.

pub mod clock;
pub mod config;
pub mod extract;
pub mod fault;
pub mod maintenance;
pub mod mart;
pub mod merge;
pub mod model;
pub mod pipeline;
pub mod progress;
pub mod query;
pub mod replicate;
pub mod serve;
pub mod sim;
pub mod source;
pub mod staging;
pub mod transform;
