//! Signed policy while the daemon runs: the active bundle's validity kept in memory, imports and
//! pulls that reach the running daemon (the control socket's `policy.*` methods and the periodic
//! pull of `[sync]`), and the watcher that journals grace transitions and stops non-break-glass
//! access when the policy lapses.
//!
//! Every activation goes one way: [`import_verified`](super::import_verified) (verify, journal,
//! atomic switch on disk), then `Appliance::activate_policy`, which hands the grants service a
//! [`PolicyAccess`] carrying the bundle's validity and revokes what the new policy no longer
//! covers. Imports are serialized (one at a time, whoever asks).
//!
//! Standing: every decision asks [`BundleValidity::standing`] at its own `now`, so a lapse takes
//! effect for new requests at once, whatever the watcher is doing. The watcher (every
//! [`WATCH_EVERY`]) journals `grace_started` and `grace_ended` once each (through
//! [`note_standing_of`](super::note_standing_of)), tells console followers, and when the
//! standing changes re-activates the policy so that live and pending grants that a lapsed policy
//! no longer covers (all but break-glass) are revoked. Expiry never widens access.
//!
//! Pull failures are journaled throttled: the first failure after a success (or after start) is
//! journaled as `pull_failing`, then at most once per `failure_journal_every` (default 24 h)
//! while attempts keep failing, each record counting the failed attempts; the first success
//! after failures is journaled as `pull_recovered`. A fetched bundle that was refused before is
//! not verified and journaled again. Every attempt is remembered in `policy/pull.json` for
//! `otgate policy status`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use otgate_policy::Policy;
use otgate_sync::bundle::hash_hex;
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::config::SyncConfig;
use super::{
    BundleValidity, BundlesError, ImportOutcome, Imported, PullAttempt, PullFailure, Standing,
};
use crate::control::Notice;
use crate::daemon::{Appliance, DaemonConfig, PolicySource};
use crate::grants::adapters::PolicyAccess;
use crate::journal::event::{Event, PolicyEvent};

/// How often the watcher looks at the clock (a wall clock can be set; it is not slept on).
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

/// The running daemon's view of its signed policy.
#[derive(Debug)]
pub struct LivePolicy {
    /// Whether the policy comes from signed bundles (an unsigned test file never lapses).
    signed: bool,
    /// The `[sync]` settings, when the daemon pulls by itself.
    sync: Option<SyncConfig>,
    /// What changes while running.
    state: Mutex<LiveState>,
    /// One import or pull at a time, from the console or the periodic pull.
    importing: tokio::sync::Mutex<()>,
    /// Wakes the watcher early (a new bundle was activated).
    wake: Notify,
}

#[derive(Debug, Default)]
struct LiveState {
    /// The active bundle's validity (`None`: no bundle, or an unsigned test policy).
    validity: Option<BundleValidity>,
    /// The standing last enforced (and journaled), by name.
    enforced: Option<&'static str>,
    /// The periodic pull's health.
    pull: PullHealth,
}

/// How the periodic pull is doing (shown by `otgate policy status`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PullHealth {
    /// Attempts that failed since the last success (or since the daemon started).
    pub consecutive_failures: u64,
    /// When the current run of failures began.
    pub failing_since: Option<DateTime<Utc>>,
    /// When a `pull_failing` record was last journaled.
    pub last_failure_journaled: Option<DateTime<Utc>>,
    /// The hash of the last bundle refused, not verified again while HQ keeps offering it.
    pub refused_hash: Option<String>,
    /// When the next periodic attempt is due.
    pub next_attempt: Option<DateTime<Utc>>,
}

/// What the daemon adds to `otgate policy status`.
#[derive(Debug, Clone, Serialize)]
pub struct DaemonView {
    /// The standing the daemon enforces now (`valid`, `grace`, `lapsed`), by its own clock.
    pub enforcing: Option<&'static str>,
    /// The periodic pull, when `[sync]` configures one.
    pub periodic_pull: Option<PeriodicView>,
}

/// The periodic pull in `otgate policy status`.
#[derive(Debug, Clone, Serialize)]
pub struct PeriodicView {
    /// HQ's server.
    pub url: String,
    /// How often, in seconds.
    pub interval_secs: u64,
    /// How it is doing.
    #[serde(flatten)]
    pub health: PullHealth,
}

impl LivePolicy {
    /// An unsigned policy's view: no validity (never lapses), no periodic pull.
    pub fn unsigned() -> Self {
        Self {
            signed: false,
            sync: None,
            state: Mutex::new(LiveState::default()),
            importing: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
        }
    }

    /// Read what the daemon needs at start: the active bundle's validity and `[sync]`.
    pub fn load(config: &DaemonConfig) -> Result<Self, BundlesError> {
        let signed = config.policy == PolicySource::ActiveBundle;
        let validity = if signed {
            super::active_validity(&config.data_dir)?
        } else {
            None
        };
        let sync = if signed {
            super::config::SyncConfig::load(&config.data_dir).map_err(|e| {
                BundlesError::Corrupt {
                    path: config.data_dir.config_file(),
                    reason: e.to_string(),
                }
            })?
        } else {
            None
        };
        Ok(Self {
            signed,
            sync,
            state: Mutex::new(LiveState {
                validity,
                ..LiveState::default()
            }),
            importing: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LiveState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The active bundle's validity, if the policy is a signed bundle.
    pub fn validity(&self) -> Option<BundleValidity> {
        self.state().validity
    }

    /// The grants service's view of `policy`, carrying the active bundle's validity.
    pub fn access(&self, policy: Arc<Policy>, now: DateTime<Utc>) -> PolicyAccess {
        match self.validity() {
            Some(validity) => PolicyAccess::with_validity(policy, validity, now),
            None => PolicyAccess::new(policy),
        }
    }

    /// What the daemon adds to `otgate policy status`, at `now`.
    pub fn view(&self, now: DateTime<Utc>) -> DaemonView {
        let state = self.state();
        DaemonView {
            enforcing: state.validity.map(|v| v.standing(now).name()),
            periodic_pull: self.sync.as_ref().map(|s| PeriodicView {
                url: s.pull.url.clone(),
                interval_secs: s.interval.as_secs(),
                health: state.pull.clone(),
            }),
        }
    }
}

/// Enforce a newly imported policy at once: remember its validity, hand it to the grants service
/// (revoking what it no longer covers) and wake the watcher. Returns the revoked grants.
async fn enforce(app: &Arc<Appliance>, imported: &Imported) -> Vec<String> {
    let Some((policy, validity)) = &imported.activated else {
        return Vec::new();
    };
    {
        let mut state = app.config.bundles.state();
        state.validity = Some(*validity);
        state.enforced = None;
    }
    app.config.bundles.wake.notify_one();
    match app.activate_policy(Arc::clone(policy)).await {
        Ok(revoked) => {
            if !revoked.is_empty() {
                tracing::warn!(
                    ?revoked,
                    "grants the new policy no longer covers were revoked"
                );
            }
            revoked
        }
        Err(error) => {
            tracing::error!(%error, "the new policy is active, but revoking what it no longer covers failed");
            Vec::new()
        }
    }
}

/// Import a bundle file into the running daemon (the `policy.import` control method).
pub async fn import_file(
    app: &Arc<Appliance>,
    path: std::path::PathBuf,
    options: super::ImportOptions,
) -> Result<(ImportOutcome, Vec<String>), BundlesError> {
    let _one_at_a_time = app.config.bundles.importing.lock().await;
    let (dd, journal, now) = (
        app.data_dir.clone(),
        app.journal.clone(),
        app.clock.now_utc(),
    );
    let imported = tokio::task::spawn_blocking(move || {
        super::import_file_verified(&dd, &journal, &path, now, &options)
    })
    .await
    .map_err(|join| BundlesError::Io {
        action: "run the import of",
        path: app.data_dir.policy_dir(),
        source: std::io::Error::other(join.to_string()),
    })??;
    let revoked = enforce(app, &imported).await;
    Ok((imported.outcome, revoked))
}

/// Pull once into the running daemon (the `policy.pull` control method and the periodic pull).
pub async fn pull(
    app: &Arc<Appliance>,
    settings: &super::PullSettings,
) -> Result<(ImportOutcome, Vec<String>), PullFailure> {
    let _one_at_a_time = app.config.bundles.importing.lock().await;
    let now = app.clock.now_utc();
    let refused_before = app
        .config
        .bundles
        .state()
        .pull
        .refused_hash
        .as_deref()
        .and_then(|h| super::parse_hash(h, &app.data_dir.policy_dir()).ok());
    let PullAttempt { result, offered } =
        super::pull_verified(&app.data_dir, &app.journal, settings, now, refused_before).await;
    match result {
        Ok(imported) => {
            let revoked = enforce(app, &imported).await;
            Ok((imported.outcome, revoked))
        }
        Err(failure) => {
            if matches!(failure, PullFailure::Import(BundlesError::Refused(_))) {
                app.config.bundles.state().pull.refused_hash = offered.as_ref().map(hash_hex);
            }
            Err(failure)
        }
    }
}

/// One periodic attempt, with its throttled journaling.
async fn periodic_pull(app: &Arc<Appliance>, sync: &SyncConfig) {
    let result = pull(app, &sync.pull).await;
    let now = app.clock.now_utc();
    let url = sync.pull.url.clone();
    let event = {
        let mut state = app.config.bundles.state();
        let health = &mut state.pull;
        match &result {
            Ok((outcome, _)) => {
                let recovered =
                    (health.consecutive_failures > 0).then(|| PolicyEvent::PullRecovered {
                        url: url.clone(),
                        failed_attempts: health.consecutive_failures,
                        failing_since: health.failing_since.unwrap_or(now),
                    });
                health.consecutive_failures = 0;
                health.failing_since = None;
                health.last_failure_journaled = None;
                if matches!(outcome, ImportOutcome::Activated { .. }) {
                    health.refused_hash = None;
                }
                recovered
            }
            Err(failure) => {
                health.consecutive_failures += 1;
                let since = *health.failing_since.get_or_insert(now);
                let due = match health.last_failure_journaled {
                    None => true,
                    Some(last) => {
                        now.signed_duration_since(last).to_std().unwrap_or_default()
                            >= sync.failure_journal_every
                    }
                };
                due.then(|| {
                    health.last_failure_journaled = Some(now);
                    PolicyEvent::PullFailing {
                        url: url.clone(),
                        failed_attempts: health.consecutive_failures,
                        failing_since: since,
                        error: failure.to_string().chars().take(2000).collect(),
                    }
                })
            }
        }
    };
    match &result {
        Ok((outcome, _)) => tracing::info!(?outcome, %url, "periodic policy pull"),
        Err(error) => tracing::warn!(%error, %url, "periodic policy pull failed"),
    }
    if let Some(event) = event {
        if let Err(error) = app.journal.append_reserved(Event::Policy(event)).await {
            tracing::error!(%error, "could not journal the periodic pull's health");
        }
    }
}

/// Journal a standing change once, tell followers, and re-enforce the policy so that a lapsed
/// policy's grants (all but break-glass) are revoked.
async fn watch_standing(app: &Arc<Appliance>) {
    let now = app.clock.now_utc();
    let Some(validity) = app.config.bundles.validity() else {
        return;
    };
    let standing = validity.standing(now);
    if app.config.bundles.state().enforced == Some(standing.name()) {
        return;
    }
    let (dd, journal) = (app.data_dir.clone(), app.journal.clone());
    let noted =
        tokio::task::spawn_blocking(move || super::note_standing_of(&dd, &journal, &validity, now))
            .await;
    match noted {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            // Not recorded: try again on the next look; decisions already follow the clock.
            tracing::error!(%error, "could not journal the policy's standing");
            return;
        }
        Err(error) => {
            tracing::error!(%error, "the standing task failed");
            return;
        }
    }
    let first_look = app.config.bundles.state().enforced.is_none();
    app.config.bundles.state().enforced = Some(standing.name());
    let message = match standing {
        Standing::Valid { .. } if first_look => return,
        Standing::Valid { expires_at } => format!(
            "policy bundle v{} is valid until {}",
            validity.version,
            expires_at.to_rfc3339()
        ),
        Standing::Grace {
            expired_at,
            grace_until,
        } => format!(
            "POLICY EXPIRED at {}: bundle v{} is enforced on grace until {}; import or pull a newer bundle",
            expired_at.to_rfc3339(),
            validity.version,
            grace_until.to_rfc3339()
        ),
        Standing::Lapsed { grace_until } => format!(
            "POLICY LAPSED at {}: only break-glass works until a newer bundle is installed",
            grace_until.to_rfc3339()
        ),
    };
    let _ = app.notices.send(Notice {
        kind: format!("policy_{}", standing.name()),
        at: now,
        grant_id: None,
        request_id: None,
        message,
    });
    // Re-enforce with the new standing: on a lapse this revokes every grant that is not
    // break-glass (live or pending).
    let revoked = app.activate_policy(app.policy()).await;
    match revoked {
        Ok(revoked) if !revoked.is_empty() => {
            tracing::error!(
                ?revoked,
                "the policy lapsed: grants other than break-glass revoked"
            )
        }
        Ok(_) => {}
        Err(error) => tracing::error!(%error, "revoking grants of a lapsed policy failed"),
    }
}

/// The watcher: standing every [`WATCH_EVERY`] and, with `[sync]`, the periodic pull. Ends when
/// the daemon stops.
pub async fn run(app: Arc<Appliance>, shutdown: CancellationToken) {
    if !app.config.bundles.signed {
        return;
    }
    let sync = app.config.bundles.sync.clone();
    let mut next_pull = tokio::time::Instant::now();
    loop {
        watch_standing(&app).await;
        if let Some(sync) = &sync {
            if tokio::time::Instant::now() >= next_pull {
                periodic_pull(&app, sync).await;
                next_pull = tokio::time::Instant::now() + sync.interval;
                let due = app.clock.now_utc()
                    + chrono::TimeDelta::from_std(sync.interval).unwrap_or_default();
                app.config.bundles.state().pull.next_attempt = Some(due);
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(WATCH_EVERY) => {}
            () = app.config.bundles.wake.notified() => {}
        }
    }
}
