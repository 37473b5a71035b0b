//! Control methods of the grants concern: `grants.list`, `grants.show`, `grants.approve`,
//! `grants.deny`, `grants.revoke`, `grants.sign_off`, `grants.break_glass`, and
//! `grants.import_review` (HQ's signed review record, verified here against the installed trust
//! root; no OT person acts, the signatures do).
//!
//! Methods that act for an OT person name them (`as`) and authenticate them against the OT
//! store before the grants service sees the identity. Answers are the records as JSON.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::{params, ControlError};
use crate::daemon::Appliance;
use crate::grants::{GrantError, ListFilter};
use crate::journal::event::RevokeCause;

#[derive(Debug, Deserialize)]
struct ListParams {
    #[serde(default)]
    filter: ListFilter,
}

#[derive(Debug, Deserialize)]
struct IdParams {
    id: String,
}

/// An OT person acting, with their second factor.
#[derive(Debug, Deserialize)]
struct Acting {
    id: String,
    #[serde(rename = "as")]
    actor: String,
    #[serde(default)]
    totp: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// A break-glass request at the appliance by an OT operator.
#[derive(Debug, Deserialize)]
struct BreakGlass {
    #[serde(rename = "as")]
    actor: String,
    #[serde(default)]
    totp: Option<String>,
    #[serde(default)]
    password: Option<String>,
    target: String,
    operations: Vec<String>,
    duration_secs: u64,
    reason: String,
}

/// HQ's signed review record, base64.
#[derive(Debug, Deserialize)]
struct ImportReview {
    record: String,
}

/// Answer a `grants.*` method.
pub async fn handle(app: &Arc<Appliance>, method: &str, p: Value) -> Result<Value, ControlError> {
    match method {
        "grants.list" => {
            let ListParams { filter } = params(method, p)?;
            to_json(&app.grants.list(filter).await)
        }
        "grants.show" => {
            let IdParams { id } = params(method, p)?;
            match app.grants.show(&id).await {
                Some(r) => to_json(&r),
                None => Err(
                    ControlError::new("not_found", format!("no request or grant {id}"))
                        .with_hint("list them with: otgate grants"),
                ),
            }
        }
        "grants.approve" => {
            let a: Acting = params(method, p)?;
            let who = authenticate(app, &a, "approve").await?;
            let approval = app.grants.approve(&a.id, &who).await.map_err(grant_error)?;
            to_json(&approval)
        }
        "grants.deny" => {
            let a: Acting = params(method, p)?;
            let reason = a.reason.clone().unwrap_or_default();
            if reason.trim().is_empty() {
                return Err(ControlError::invalid("a denial needs a reason (--reason)"));
            }
            let who = authenticate(app, &a, "deny").await?;
            app.grants
                .deny(&a.id, &who, &reason)
                .await
                .map_err(grant_error)?;
            Ok(serde_json::json!({ "id": a.id, "state": "denied" }))
        }
        "grants.revoke" => {
            let a: Acting = params(method, p)?;
            let reason = a.reason.clone().unwrap_or_default();
            if reason.trim().is_empty() {
                return Err(ControlError::invalid(
                    "a revocation needs a reason (--reason)",
                ));
            }
            let who = authenticate(app, &a, "revoke").await?;
            app.grants
                .revoke(&a.id, &who, RevokeCause::Manual, &reason)
                .await
                .map_err(grant_error)?;
            Ok(serde_json::json!({ "id": a.id, "state": "revoked" }))
        }
        "grants.sign_off" => {
            let a: Acting = params(method, p)?;
            let who = authenticate(app, &a, "sign_off").await?;
            app.grants
                .sign_off(&a.id, &who)
                .await
                .map_err(grant_error)?;
            Ok(serde_json::json!({ "id": a.id, "signed_off_by": who }))
        }
        "grants.break_glass" => {
            let b: BreakGlass = params(method, p)?;
            let acting = Acting {
                id: b.target.clone(),
                actor: b.actor.clone(),
                totp: b.totp.clone(),
                password: b.password.clone(),
                reason: None,
            };
            let who = authenticate(app, &acting, "break_glass").await?;
            let ask = crate::grants::Ask {
                requester: who,
                asset: b.target,
                operations: b.operations,
                start: app.clock.now_utc(),
                duration_secs: b.duration_secs,
                ticket: None,
                reason: b.reason,
                source: None,
                mfa: acting.totp.is_some(),
                emergency: true,
            };
            let submitted = app.grants.submit(ask).await.map_err(grant_error)?;
            to_json(&submitted)
        }
        "grants.import_review" => {
            use base64::Engine;
            let ImportReview { record } = params(method, p)?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(record.as_bytes())
                .map_err(|e| ControlError::invalid(format!("record is not base64: {e}")))?;
            let root = crate::bundles::trust_root(&app.data_dir).map_err(|e| {
                ControlError::refused(e.to_string())
                    .with_hint("a review record is checked against HQ's trust root; install it with otgate init --trust-root")
            })?;
            let signed_off = app
                .grants
                .import_review_bytes(&bytes, &root)
                .await
                .map_err(grant_error)?;
            Ok(serde_json::json!({ "signed_off": signed_off }))
        }
        _ => Err(ControlError::new(
            "unknown_method",
            format!("unknown method {method}"),
        )),
    }
}

/// Authenticate the OT person named by `as` against the OT store (and journal the outcome);
/// returns their identity. IT identities are not in the OT store, so they never get past here.
async fn authenticate(
    app: &Arc<Appliance>,
    acting: &Acting,
    action: &str,
) -> Result<String, ControlError> {
    let purpose = format!("{action} {}", acting.id);
    console_login(
        app,
        &acting.actor,
        acting.password.clone(),
        acting.totp.clone(),
        purpose,
    )
    .await
}

/// Authenticate OT person `actor` at the console against the OT store for `purpose`, journaling
/// the outcome either way (failures into the reserve); their identity. Every console action of
/// every concern goes through here.
pub(crate) async fn console_login(
    app: &Arc<Appliance>,
    actor: &str,
    password: Option<String>,
    totp: Option<String>,
    purpose: String,
) -> Result<String, ControlError> {
    use crate::journal::event::{AuthEvent, Event};
    use crate::stores::Zone;
    let Some(store) = app.ot_store.clone() else {
        return Err(
            ControlError::new("unauthenticated", "the OT store is not available")
                .with_hint("check the daemon's log; the OT store opens at start"),
        );
    };
    let now = app.clock.now_utc();
    let user = actor.to_owned();
    let outcome = tokio::task::spawn_blocking(move || {
        store.authenticate(&user, password.as_deref(), totp.as_deref(), now)
    })
    .await
    .map_err(|e| ControlError::internal(e.to_string()))?;
    match outcome {
        Ok(principal) => {
            let event = AuthEvent::LoginSucceeded {
                identity: principal.id().to_owned(),
                zone: Zone::Ot,
                method: principal.factors().method().to_owned(),
                source: "console".to_owned(),
                purpose,
            };
            app.journal
                .append(Event::Auth(event))
                .await
                .map_err(|e| ControlError::internal(e.to_string()))?;
            Ok(principal.id().to_owned())
        }
        Err(e) => {
            let event = AuthEvent::LoginFailed {
                identity: actor.to_owned(),
                zone: Zone::Ot,
                reason: e.reason_code().to_owned(),
                source: "console".to_owned(),
            };
            app.journal
                .append_reserved(Event::Auth(event))
                .await
                .map_err(|e| ControlError::internal(e.to_string()))?;
            let policy = app.policy();
            let message = if policy.it_identity(actor).is_some()
                && policy.ot_identity(actor).is_none()
            {
                format!(
                    "{actor} is an IT identity: only OT identities approve, deny, revoke, sign off or kill sessions"
                )
            } else {
                format!("cannot authenticate {actor} at the console: {e}")
            };
            Err(ControlError::new("unauthenticated", message)
                .with_hint("give your OT password (--password-stdin) and/or current --totp code"))
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, ControlError> {
    serde_json::to_value(value).map_err(|e| ControlError::internal(e.to_string()))
}

/// Map a grants error to what the CLI is told.
pub fn grant_error(e: GrantError) -> ControlError {
    match e {
        GrantError::NotFound { .. } => ControlError::new("not_found", e.to_string())
            .with_hint("list requests and grants with: otgate grants"),
        GrantError::Refused { .. } | GrantError::Illegal { .. } => {
            ControlError::refused(e.to_string())
        }
        GrantError::Journal(_) => ControlError::internal(e.to_string())
            .with_hint("check the journal with: otgate audit verify"),
    }
}
