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
//! On the running appliance an alert is journaled first and then, where the policy opts in
//! (`revoke_on` on the grant's rule), revokes grants through the grants service
//! ([`record_on_appliance`]; used by the control method `inspect.record` and by the live
//! capture task of `otgate serve`).
//!
//! What it does not do: decide grants (policy and the grants service do), or write anything
//! but inspection records. It reads the journal without its lock (records are immutable once
//! written) and, with no daemon serving, appends through `Journal::open`, which takes the lock.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use otgate_policy::{GrantScope, OpVerdict, Policy};

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

pub(crate) fn window(
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

/// Why an inspection record could not be made on the running appliance, or its response failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The journal refused the record; nothing was done for it.
    #[error("cannot journal the inspection record `{kind}`")]
    Journal {
        /// The record's kind (`alert`, `asset_observed`).
        kind: &'static str,
        /// The journal's reason.
        #[source]
        source: crate::journal::JournalError,
    },
    /// The alert is journaled, but revoking the grants whose rules opt in failed.
    #[error("alert `{alert}` on {asset} is journaled, but revoking the grants it triggers failed")]
    Revoke {
        /// The alert kind.
        alert: &'static str,
        /// The policy asset.
        asset: String,
        /// The grants service's reason.
        #[source]
        source: crate::grants::GrantError,
    },
}

/// What recording one inspection event on the appliance did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RecordOutcome {
    /// The record's journal sequence number.
    pub seq: u64,
    /// Grants revoked because the alert is one of their rule's `revoke_on` triggers.
    pub revoked: Vec<String>,
}

/// The policy assets an alert concerns: the asset it names, when policy has that id, or else
/// every policy asset at the IP address it names (an address alone cannot tell the ports apart).
pub fn concerned_assets(policy: &Policy, named: &str) -> Vec<String> {
    if policy.assets.iter().any(|a| a.id.as_str() == named) {
        return vec![named.to_owned()];
    }
    let ip = named
        .parse::<std::net::IpAddr>()
        .ok()
        .or_else(|| named.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()));
    let Some(ip) = ip else {
        return Vec::new();
    };
    policy
        .assets
        .iter()
        .filter(|a| a.address.ip() == ip)
        .map(|a| a.id.to_string())
        .collect()
}

/// Record one inspection event on the running appliance, durably, and then act on it: an
/// alert revokes the active grants on the assets it concerns whose rule names its kind in
/// `revoke_on` (`Grants::fire_trigger`, which never cuts an emergency grant and journals each
/// revocation before it takes effect; the grants' sessions close on their cancellation).
pub async fn record_on_appliance(
    app: &crate::daemon::Appliance,
    event: InspectEvent,
) -> Result<RecordOutcome, RecordError> {
    use crate::journal::event::Subjects;
    let kind = event.kind();
    let trigger = match &event {
        InspectEvent::Alert {
            alert,
            asset,
            detail,
            ..
        } => Some((alert.name(), asset.clone(), detail.clone())),
        _ => None,
    };
    let receipt = app
        .journal
        .append(Event::Inspect(event))
        .await
        .map_err(|source| RecordError::Journal { kind, source })?;
    let mut outcome = RecordOutcome {
        seq: receipt.seq(),
        revoked: Vec::new(),
    };
    let Some((alert, named, detail)) = trigger else {
        return Ok(outcome);
    };
    for asset in concerned_assets(&app.policy(), &named) {
        let revoked = app
            .grants
            .fire_trigger(alert, &asset, &detail)
            .await
            .map_err(|source| RecordError::Revoke {
                alert,
                asset: asset.clone(),
                source,
            })?;
        if !revoked.is_empty() {
            tracing::warn!(alert, asset = %asset, grants = ?revoked, "inspection alert revoked grants");
        }
        outcome.revoked.extend(revoked);
    }
    Ok(outcome)
}

/// What [`journal_events`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Journaled {
    /// Records appended.
    pub recorded: usize,
    /// Grants the running appliance revoked because of them.
    pub revoked: Vec<String>,
    /// Whether a running appliance recorded them (else they went straight to the journal, and
    /// no grant was revoked: only the running appliance acts on alerts).
    pub via_daemon: bool,
}

/// Serialized inspection events sent in one control call at most (the line limit is 256 KiB).
const MAX_CALL_BYTES: usize = 128 * 1024;

/// Append inspection events (alerts, inventory changes) to the data directory's journal, each
/// durable when this returns: through the running appliance's control socket when it serves
/// (it then also acts on alerts), or else straight into the journal.
pub fn journal_events(data_dir: &DataDir, events: Vec<InspectEvent>) -> anyhow::Result<Journaled> {
    let mut done = Journaled::default();
    if events.is_empty() || !data_dir.journal_dir().exists() {
        return Ok(done);
    }
    if let Ok(mut daemon) = crate::control::client::Client::connect(&data_dir.control_socket()) {
        done.via_daemon = true;
        let mut batch: Vec<serde_json::Value> = Vec::new();
        let mut bytes = 0;
        let mut events = events.into_iter().peekable();
        while let Some(event) = events.next() {
            let value =
                serde_json::to_value(&event).context("cannot encode an inspection record")?;
            bytes += value.to_string().len();
            batch.push(value);
            let full = events.peek().is_none_or(|next| {
                bytes + serde_json::to_string(next).map_or(0, |t| t.len()) > MAX_CALL_BYTES
            });
            if full {
                let answer = daemon
                    .call("inspect.record", serde_json::json!({ "events": batch }))
                    .context("the running appliance did not record the inspection records")?;
                done.recorded += batch.len();
                if let Some(revoked) = answer.get("revoked").and_then(|r| r.as_array()) {
                    done.revoked
                        .extend(revoked.iter().filter_map(|g| g.as_str().map(str::to_owned)));
                }
                batch.clear();
                bytes = 0;
            }
        }
        return Ok(done);
    }
    let key = crate::journal::keys::load_appliance_key(&data_dir.appliance_key())
        .context("cannot load the appliance key to journal inspection records")?;
    let journal = crate::journal::Journal::open(
        &data_dir.journal_dir(),
        key,
        crate::journal::JournalConfig::default(),
    )
    .context(
        "cannot open the journal to record inspection results (is `otgate serve` running on this data dir?)",
    )?;
    for event in events {
        let kind = crate::journal::event::Subjects::kind(&event);
        journal
            .append_blocking(Event::Inspect(event))
            .with_context(|| format!("cannot journal the inspection record `{kind}`"))?;
        done.recorded += 1;
    }
    Ok(done)
}
