//! Inspection on the appliance: what passive inspection takes from the appliance (the policy's
//! asset addresses and the grant windows recorded in the journal, for `unauthorized_write`) and
//! gives back (alerts, journaled as `InspectEvent::Alert`). The policy is the one given on the
//! command line (`--policy`) or else the appliance's active bundle (`bundles::load_active`).
//!
//! Grant windows are rebuilt from the journal's access records alone: a `request_submitted`
//! record carries the asset and the granted scope, `grant_activated` opens the window (until its
//! recorded end), `grant_ended` and `grant_revoked` close it early. A write seen on the wire is
//! covered when a window of its asset was open at the write's capture time and the scope allows
//! the operation (`GrantScope::check_modbus`, the broker's own check).
//!
//! What it does not do: decide or revoke grants, or write anything but alert records. It reads
//! the journal without its lock (records are immutable once written) and appends through
//! `Journal::open`, which takes the lock: with the daemon running that fails, and says so.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use otgate_policy::{GrantScope, OpVerdict, Policy};

use super::event::Alert;
use super::grants::{GrantWindow, GrantWindows};
use crate::datadir::DataDir;
use crate::journal::event::{AccessEvent, Event, InspectEvent};

/// Coverage over `policy`'s assets with the grant windows recorded in the journal at
/// `journal_dir` (none when the directory does not exist).
pub fn coverage_from_journal(policy: &Policy, journal_dir: &Path) -> anyhow::Result<GrantWindows> {
    let mut coverage =
        GrantWindows::new(policy.assets.iter().map(|a| (a.id.to_string(), a.address)));
    if !journal_dir.exists() {
        return Ok(coverage);
    }
    let reader = crate::journal::read::JournalReader::open(journal_dir)
        .with_context(|| format!("cannot read the journal in {}", journal_dir.display()))?;
    // request id -> (asset, scope); grant id by request id.
    let mut submitted: HashMap<String, (String, Option<Arc<GrantScope>>)> = HashMap::new();
    let mut grant_of: HashMap<String, String> = HashMap::new();
    for record in reader {
        let record = record.context("cannot read a journal record")?;
        let Event::Access(access) = record.event else {
            continue;
        };
        match access {
            AccessEvent::RequestSubmitted(s) => {
                let scope = serde_json::from_value::<GrantScope>(s.scope.clone())
                    .ok()
                    .map(Arc::new);
                submitted.insert(s.request_id.clone(), (s.asset.clone(), scope));
            }
            AccessEvent::GrantActivated {
                request_id,
                grant_id,
                end,
                at,
            } => {
                let Some((asset, scope)) = submitted.get(&request_id) else {
                    continue;
                };
                grant_of.insert(request_id.clone(), grant_id.clone());
                coverage.add(window(grant_id, asset.clone(), scope.clone(), at, end));
            }
            AccessEvent::GrantEnded { grant_id, at, .. } => coverage.close(&grant_id, at),
            AccessEvent::GrantRevoked {
                request_id,
                grant_id,
                at,
                ..
            } => {
                if let Some(g) = grant_id.or_else(|| grant_of.get(&request_id).cloned()) {
                    coverage.close(&g, at);
                }
            }
            _ => {}
        }
    }
    Ok(coverage)
}

fn window(
    grant: String,
    asset: String,
    scope: Option<Arc<GrantScope>>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> GrantWindow {
    let for_asset = asset.clone();
    GrantWindow {
        grant,
        asset,
        start,
        end: Some(end),
        // A scope that no longer parses covers nothing: better a false alert than a blind spot.
        allows: Arc::new(move |op| {
            scope
                .as_ref()
                .is_some_and(|s| matches!(s.check_modbus(&for_asset, op), OpVerdict::Allow))
        }),
    }
}

/// Coverage for an appliance data directory: `policy` (given on the command line) or, when the
/// appliance has one, its active policy; `None` when neither is there.
pub fn grant_coverage(
    data_dir: &DataDir,
    policy: Option<&Policy>,
) -> anyhow::Result<Option<GrantWindows>> {
    if let Some(policy) = policy {
        return coverage_from_journal(policy, &data_dir.journal_dir()).map(Some);
    }
    let active = crate::bundles::load_active(data_dir)
        .context("cannot load the appliance's active policy bundle")?;
    match active {
        Some(active) => coverage_from_journal(&active.policy, &data_dir.journal_dir()).map(Some),
        None => Ok(None),
    }
}

/// Append each alert to the data directory's journal as `InspectEvent::Alert` (durable when
/// this returns). Fails clearly when the journal is locked by a running daemon.
pub fn journal_alerts(data_dir: &DataDir, alerts: &[Alert]) -> anyhow::Result<usize> {
    if alerts.is_empty() || !data_dir.journal_dir().exists() {
        return Ok(0);
    }
    // A running daemon holds the journal: record through its control socket.
    if let Ok(mut daemon) = crate::control::client::Client::connect(&data_dir.control_socket()) {
        let events: Vec<InspectEvent> = alerts.iter().map(InspectEvent::from_alert).collect();
        daemon
            .call("inspect.alerts", serde_json::json!({ "alerts": events }))
            .context("the running appliance did not record the alerts")?;
        return Ok(alerts.len());
    }
    let key = crate::journal::keys::load_appliance_key(&data_dir.appliance_key())
        .context("cannot load the appliance key to journal alerts")?;
    let journal = crate::journal::Journal::open(
        &data_dir.journal_dir(),
        key,
        crate::journal::JournalConfig::default(),
    )
    .context(
        "cannot open the journal to record alerts (is `otgate serve` running on this data dir?)",
    )?;
    for alert in alerts {
        journal
            .append_blocking(Event::Inspect(InspectEvent::from_alert(alert)))
            .with_context(|| format!("cannot journal alert {}", alert.kind.name()))?;
    }
    Ok(alerts.len())
}
