//! Inspection on the appliance: what passive inspection takes from the appliance's data
//! directory (the active policy's asset addresses and the grant windows recorded in the journal,
//! for `unauthorized_write`) and gives back (alerts, journaled as `InspectEvent::Alert`).
//!
//! What it does not do: decide or revoke grants. Until the journal, the active bundle and the
//! grant records are available in this build, [`grant_coverage`] answers `None` (no judgement
//! of writes against grants) and [`journal_alerts`] records nothing.

use crate::datadir::DataDir;

use super::event::Alert;
use super::grants::GrantWindows;

/// Coverage built from the data directory's active policy and journaled grant windows, or
/// `None` when the data directory has no active policy.
pub fn grant_coverage(data_dir: &DataDir) -> anyhow::Result<Option<GrantWindows>> {
    let _ = data_dir;
    Ok(None)
}

/// Append each alert to the data directory's journal as `InspectEvent::Alert`.
pub fn journal_alerts(data_dir: &DataDir, alerts: &[Alert]) -> anyhow::Result<()> {
    let _ = (data_dir, alerts);
    Ok(())
}
