//! The long-running appliance (`otgate serve`): `run(config, listeners, clock, shutdown)` wires
//! journal, state, stores, grants, tunnel and brokers together and owns the shutdown broadcast.

use std::sync::Arc;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::control::Notice;
use crate::datadir::DataDir;
use crate::grants::Grants;

/// How many notices a slow follower may fall behind before it skips some.
pub const NOTICE_BACKLOG: usize = 1024;

/// What every part of the running daemon shares (the control handlers get it).
#[derive(Debug)]
pub struct Appliance {
    /// The data directory.
    pub data_dir: DataDir,
    /// Wall and monotonic time.
    pub clock: SharedClock,
    /// Requests and grants.
    pub grants: Arc<Grants>,
    /// Notices to followers of the control socket (warnings, ends, revocations).
    pub notices: broadcast::Sender<Notice>,
    /// Fires when the daemon stops; every task selects on it.
    pub shutdown: CancellationToken,
}
