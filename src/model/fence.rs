//! Roles and epochs: the fence that decides which appliance of a pair of sites may write its mart. The decisions
//! (hearing a peer, promotion, split-brain) are made in `replicate::fencing`; the types are shared by staging
//! (which persists the fence), the server (which shows and changes it) and the peer protocol.

use serde::{Deserialize, Serialize};

/// What an appliance may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Extracts from the IDBs and publishes mart versions.
    Active,
    /// Serves reads only.
    Standby,
}

impl Role {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Active => "active",
            Role::Standby => "standby",
        }
    }
}

/// An appliance's role at an epoch, persisted in staging so a restart keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Fence {
    /// The role.
    pub role: Role,
    /// Grows by one with every promotion; a lower epoch never overrides a higher one.
    pub epoch: u64,
    /// When this state began (epoch seconds).
    pub since: i64,
    /// Why (promotion by whom, demotion because of which peer, split-brain).
    pub reason: String,
    /// Stopped because both sites were active at this epoch; the peer stops too when it sees this.
    #[serde(default)]
    pub split_brain: bool,
}

/// The highest epoch believed from a peer (and reached by promotion). Epochs grow by one per promotion, so no real
/// pair of sites comes near it; a peer claiming more is refused, so a promotion can always raise the epoch.
pub const MAX_EPOCH: u64 = u32::MAX as u64;

/// What the peer said about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PeerFence {
    /// The peer's site.
    pub site: String,
    /// Its fence.
    pub fence: Fence,
}
