//! The IT side of the daemon: the TLS listener, the tunnel's authentication (`tunnel::server`),
//! and what an authenticated tunnel is for: a request to the grants service, or a broker session
//! on an active grant.
//!
//! Nothing reaches an OT asset from here without an active grant: a `Session` tunnel first gets a
//! [`SessionLease`](crate::grants::SessionLease) from the grants service (active grant, same
//! identity, same asset) and only then is handed to the broker, which closes it when the lease's
//! token fires. Connections are bounded by the daemon's session cap.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{Appliance, DaemonError};
use crate::grants::Ask;
use crate::journal::event::Event;
use crate::tunnel::server::{Authenticated, Authenticator, IdentityDirectory, ItIdentityKey};
use crate::tunnel::tls::ApplianceTls;
use crate::tunnel::Purpose;

/// The body of a `Purpose::Request` tunnel: what `otgate request` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestBody {
    /// The asset.
    pub target: String,
    /// The operations, as `--op` strings.
    pub operations: Vec<String>,
    /// When the window starts; `None` for now.
    pub start: Option<DateTime<Utc>>,
    /// How long, seconds.
    pub duration_secs: u64,
    /// The ticket.
    pub ticket: Option<String>,
    /// Why.
    pub reason: String,
}

/// The appliance's answer to a request tunnel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RequestReply {
    /// The request was decided (allowed, waiting, or refused by policy).
    Decided(crate::grants::service::Submitted),
    /// The request could not be taken (malformed, or the appliance failed).
    Failed {
        /// Why.
        reason: String,
    },
}

/// One frame of a `Status` tunnel: the grant as it stands, or why the appliance will not say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum StatusReply {
    /// Where the grant stands now (sent at once, at each warning, and when it ends).
    Status(crate::grants::service::GrantStatus),
    /// Not the client's grant, or no such grant.
    Refused {
        /// Why.
        reason: String,
    },
}

/// How often a `Status` tunnel gets a frame even when nothing changed (so the client sees a
/// dead appliance, and the remaining time stays fresh).
pub const STATUS_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(60);

/// The appliance's TLS identity, made by `otgate init`.
pub fn load_tls(app: &Appliance) -> Result<ApplianceTls, DaemonError> {
    crate::tunnel::tls::load_server(&app.data_dir).map_err(|e| {
        DaemonError::Tls(format!(
            "{e} (has `otgate init` made the appliance certificate?)"
        ))
    })
}

/// The active policy as the tunnel's identity directory (a new policy applies at once).
struct PolicyDirectory {
    app: std::sync::Weak<Appliance>,
}

impl IdentityDirectory for PolicyDirectory {
    fn it_identity(&self, id: &str) -> Option<ItIdentityKey> {
        let app = self.app.upgrade()?;
        let policy = app.policy();
        let identity = policy.it_identity(id)?;
        Some(ItIdentityKey {
            public_key: identity.public_key,
            expires_at: identity.expires,
        })
    }

    fn mfa_required(&self, identity: &str, purpose: &Purpose) -> bool {
        // Sessions ride on a grant that was obtained with MFA where the rule asked for it.
        // A request needs a code unless policy would grant it without one (a read-only rule
        // that waives MFA); asking policy keeps that decision in one place.
        let Purpose::Request(body) = purpose else {
            return false;
        };
        let (Some(app), Ok(body)) = (
            self.app.upgrade(),
            serde_json::from_value::<RequestBody>(body.clone()),
        ) else {
            return true;
        };
        let now = app.clock.now_utc();
        let ask = Ask {
            requester: identity.to_owned(),
            asset: body.target,
            operations: body.operations,
            start: body.start.unwrap_or(now),
            duration_secs: body.duration_secs,
            ticket: body.ticket,
            reason: body.reason,
            source: None,
            mfa: false,
            emergency: false,
        };
        let access = crate::grants::adapters::PolicyAccess::new(app.policy());
        access.mfa_missing(&ask, now)
    }
}

struct JournalAuth {
    journal: crate::journal::Journal,
}

impl crate::tunnel::server::AuthRecorder for JournalAuth {
    fn record(
        &self,
        event: crate::journal::event::AuthEvent,
    ) -> futures::future::BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            self.journal
                .append(Event::Auth(event))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

/// Serve the IT side until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    tls: ApplianceTls,
    app: Arc<Appliance>,
    shutdown: CancellationToken,
) {
    let it_store = match crate::stores::it::ItStore::open(&app.data_dir.it_store_dir()) {
        Ok(store) => store,
        Err(e) => {
            tracing::error!(error = %e, "IT store cannot be opened; the IT side stays closed");
            shutdown.cancelled().await;
            return;
        }
    };
    let auth = Authenticator::new(
        Arc::new(PolicyDirectory {
            app: Arc::downgrade(&app),
        }),
        it_store,
        Arc::new(JournalAuth {
            journal: app.journal.clone(),
        }),
        Arc::clone(&app.clock),
        tls.fingerprint,
    );
    let server = Arc::new(crate::tunnel::server::TunnelServer::new(
        &tls,
        Arc::new(auth),
    ));
    let max = app.config.max_sessions;
    let handler_app = Arc::clone(&app);
    server
        .serve(listener, max, shutdown, move |tunnel| {
            let app = Arc::clone(&handler_app);
            async move { handle(app, tunnel).await }
        })
        .await;
}

async fn handle(app: Arc<Appliance>, tunnel: Authenticated) {
    let Authenticated {
        mut stream,
        peer,
        purpose,
    } = tunnel;
    match purpose {
        Purpose::Request(body) => {
            let reply = match serde_json::from_value::<RequestBody>(body) {
                Err(e) => RequestReply::Failed {
                    reason: format!("malformed request: {e}"),
                },
                Ok(body) => {
                    let ask = Ask {
                        requester: peer.identity().to_owned(),
                        asset: body.target,
                        operations: body.operations,
                        start: body.start.unwrap_or_else(|| app.clock.now_utc()),
                        duration_secs: body.duration_secs,
                        ticket: body.ticket,
                        reason: body.reason,
                        source: Some(peer.source().ip()),
                        mfa: peer.totp_verified(),
                        emergency: false,
                    };
                    match app.grants.submit(ask).await {
                        Ok(submitted) => RequestReply::Decided(submitted),
                        Err(e) => RequestReply::Failed {
                            reason: e.to_string(),
                        },
                    }
                }
            };
            if let Err(e) = crate::tunnel::handshake::write_message(&mut stream, &reply).await {
                tracing::debug!(error = %e, "could not answer a request tunnel");
            }
        }
        Purpose::Status { grant_id } => {
            status_stream(&app, &mut stream, &grant_id, peer.identity()).await;
        }
        Purpose::Session { grant_id, asset } => {
            let lease = match app
                .grants
                .open_session(&grant_id, peer.identity(), &asset)
                .await
            {
                Ok(lease) => lease,
                Err(e) => {
                    tracing::info!(grant = %grant_id, error = %e, "session refused");
                    return;
                }
            };
            super::session::run(app, stream, lease).await;
        }
    }
}

/// Serve a `Status` tunnel: a frame now, one at each notice about the grant (warnings, end,
/// revocation) and every [`STATUS_HEARTBEAT`], until the grant is final, the client leaves or
/// the daemon stops.
async fn status_stream<S>(app: &Arc<Appliance>, stream: &mut S, grant_id: &str, identity: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use crate::tunnel::handshake::write_message;
    // Subscribe before the first frame, so no notice falls between the two.
    let mut notices = app.notices.subscribe();
    loop {
        let reply = match app.grants.status(grant_id, identity).await {
            Ok(status) => StatusReply::Status(status),
            Err(e) => StatusReply::Refused {
                reason: e.to_string(),
            },
        };
        let last = match &reply {
            StatusReply::Status(s) => s.state.is_final(),
            StatusReply::Refused { .. } => true,
        };
        if let Err(e) = write_message(stream, &reply).await {
            tracing::debug!(error = %e, grant = grant_id, "status client left");
            return;
        }
        if last {
            return;
        }
        let heartbeat = tokio::time::sleep(STATUS_HEARTBEAT);
        tokio::pin!(heartbeat);
        loop {
            tokio::select! {
                () = app.shutdown.cancelled() => return,
                () = &mut heartbeat => break,
                notice = notices.recv() => match notice {
                    Ok(n) if n.grant_id.as_deref() == Some(grant_id) => break,
                    Ok(_) => {}
                    // Fell behind: send a fresh frame.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }
}
