//! One broker session on an active grant: the glue between an authenticated `Session` tunnel
//! and the broker (`broker::modbus::run_session`).
//!
//! The session ends when the grant's token fires (end or revocation), at the grant's monotonic
//! deadline, when the daemon stops, or when either side closes; dropping the lease tells the
//! grants service that the session left (for "end on last disconnect"). Assets the appliance has
//! no broker for yet (VNC, DNP3, plain TCP) get no session: nothing is forwarded to them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::Appliance;
use crate::broker::modbus::session::{run_session, SessionContext};
use crate::grants::SessionLease;

/// Sessions whose rule names no idle timeout close after this long without a byte.
pub const DEFAULT_IDLE_TIMEOUT: Duration = crate::grants::service::DEFAULT_IDLE_TIMEOUT;

static SESSIONS: AtomicU64 = AtomicU64::new(0);

/// A session id unique across restarts: `S-<grant>-<unix ms>-<n>`.
fn new_session_id(grant_id: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    let n = SESSIONS.fetch_add(1, Ordering::Relaxed);
    format!("S-{grant_id}-{}-{n}", now.timestamp_millis())
}

/// Carry `stream` for `lease` until it must end.
pub async fn run<S>(app: Arc<Appliance>, mut stream: S, lease: SessionLease)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let policy = app.policy();
    let asset = match policy.asset(&lease.asset) {
        Some(a) if a.protocol == otgate_policy::Protocol::Modbus => a.clone(),
        Some(a) => {
            tracing::info!(asset = %lease.asset, protocol = a.protocol.name(), "no broker for this protocol yet");
            let _ = stream.shutdown().await;
            return;
        }
        None => {
            tracing::info!(asset = %lease.asset, "the active policy no longer names this asset");
            let _ = stream.shutdown().await;
            return;
        }
    };
    let scope: otgate_policy::GrantScope = match serde_json::from_value(lease.scope.clone()) {
        Ok(scope) => scope,
        Err(e) => {
            tracing::error!(grant = %lease.grant_id, error = %e, "grant scope does not parse; no session");
            let _ = stream.shutdown().await;
            return;
        }
    };
    // The broker's token: fires with the grant's, and when the daemon stops.
    let cancel = lease.cancel.child_token();
    let watcher = {
        let (cancel, shutdown) = (cancel.clone(), app.shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => cancel.cancel(),
                () = cancel.cancelled() => {}
            }
        })
    };
    let idle_timeout = if lease.idle_timeout.is_zero() {
        DEFAULT_IDLE_TIMEOUT
    } else {
        lease.idle_timeout
    };
    let ctx = SessionContext {
        session_id: new_session_id(&lease.grant_id, app.clock.now_utc()),
        grant_id: lease.grant_id.clone(),
        identity: lease.identity.clone(),
        asset_id: lease.asset.clone(),
        upstream: asset.address,
        unit_ids: asset.unit_ids.clone(),
        scope,
        journal: app.journal.clone(),
        recordings: app.data_dir.sessions_dir(),
        cancel: cancel.clone(),
        deadline: lease.deadline,
        idle_timeout,
        upstream_timeout: app.config.upstream_timeout,
    };
    let outcome = run_session(&mut stream, ctx).await;
    tracing::info!(grant = %lease.grant_id, ?outcome, "session ended");
    if outcome.reason == crate::journal::event::SessionEndReason::IdleTimeout {
        lease.idled_out();
    }
    cancel.cancel();
    let _ = watcher.await;
    let _ = stream.shutdown().await;
    drop(lease);
}
