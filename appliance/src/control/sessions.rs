//! Control methods of the broker sessions concern: `sessions.list` (the sessions running now)
//! and `sessions.kill` (an OT operator ends one).
//!
//! A kill names the OT person (`as`), who is authenticated against the OT store (journaled either
//! way); then `SessionKilled` is journaled, and only then is the session's token fired. The
//! session closes within a second and journals its own end (`killed`). IT identities are not in
//! the OT store, so they can never kill a session here.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::{params, ControlError};
use crate::broker::modbus::live;
use crate::daemon::Appliance;
use crate::journal::event::{Event, SessionEvent};

/// An OT person killing a session, with their second factor.
#[derive(Debug, Deserialize)]
struct Kill {
    id: String,
    #[serde(rename = "as")]
    actor: String,
    #[serde(default)]
    totp: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Answer a `sessions.*` method.
pub async fn handle(app: &Arc<Appliance>, method: &str, p: Value) -> Result<Value, ControlError> {
    match method {
        "sessions.list" => to_json(&live::list()),
        "sessions.kill" => {
            let kill: Kill = params(method, p)?;
            if live::find(&kill.id).is_none() {
                return Err(
                    ControlError::new("not_found", format!("no live session {}", kill.id))
                        .with_hint("list the live sessions with: otgate sessions --live"),
                );
            }
            let who = authenticate(app, &kill).await?;
            let event = SessionEvent::SessionKilled {
                session_id: kill.id.clone(),
                by: who.clone(),
            };
            app.journal
                .append(Event::Session(event))
                .await
                .map_err(|e| ControlError::internal(e.to_string()))?;
            if !live::kill(&kill.id) {
                return Err(ControlError::new(
                    "not_found",
                    format!("session {} ended before it could be killed", kill.id),
                ));
            }
            Ok(serde_json::json!({ "session_id": kill.id, "killed_by": who }))
        }
        _ => Err(ControlError::new(
            "unknown_method",
            format!("unknown method {method}"),
        )),
    }
}

/// Authenticate the OT person killing the session (journaled either way).
async fn authenticate(app: &Arc<Appliance>, kill: &Kill) -> Result<String, ControlError> {
    let purpose = format!("kill {}", kill.id);
    super::grants::console_login(
        app,
        &kill.actor,
        kill.password.clone(),
        kill.totp.clone(),
        purpose,
    )
    .await
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, ControlError> {
    serde_json::to_value(value).map_err(|e| ControlError::internal(e.to_string()))
}
