//! Control methods of the inspection concern, for `otgate inspect` and `otgate inventory` run
//! while the daemon holds the journal and the state:
//!
//! - `inspect.record` (`{ "events": [InspectEvent, ...] }`; `inspect.alerts` with `alerts` is
//!   the same): journals each record durably, in order, and acts on alerts where the policy
//!   says so (`inspect::appliance::record_on_appliance`: revokes the grants whose rule lists
//!   the alert kind in `revoke_on`, never an emergency grant). Answers the records' sequence
//!   numbers and the grants revoked.
//! - `inspect.inventory`: the inventory view, caught up with the journal first.
//!
//! What it does not do: judge traffic. The records arrive already made by a monitor.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::{params, ControlError};
use crate::daemon::Appliance;
use crate::inspect::appliance::{record_on_appliance, RecordError};
use crate::journal::event::InspectEvent;

/// The records to journal.
#[derive(Debug, Deserialize)]
struct Records {
    #[serde(alias = "alerts")]
    events: Vec<InspectEvent>,
}

/// The most records one call may carry (the line limit bounds it too).
const MAX_RECORDS: usize = 1000;

/// Answer an `inspect.*` method.
pub async fn handle(app: &Arc<Appliance>, method: &str, p: Value) -> Result<Value, ControlError> {
    match method {
        "inspect.record" | "inspect.alerts" => {
            let Records { events } = params(method, p)?;
            if events.len() > MAX_RECORDS {
                return Err(ControlError::new(
                    "too_many",
                    format!(
                        "{} inspection records in one call; at most {MAX_RECORDS}",
                        events.len()
                    ),
                ));
            }
            let mut seqs = Vec::with_capacity(events.len());
            let mut revoked = Vec::new();
            for event in events {
                let outcome = record_on_appliance(app, event).await.map_err(|e| match e {
                    RecordError::Journal { .. } => ControlError::new("journal", error_chain(&e)),
                    _ => ControlError::new("grants", error_chain(&e)),
                })?;
                seqs.push(outcome.seq);
                revoked.extend(outcome.revoked);
            }
            Ok(serde_json::json!({ "recorded": seqs.len(), "seqs": seqs, "revoked": revoked }))
        }
        "inspect.inventory" => {
            let state = app.state.clone();
            let inventory = tokio::task::spawn_blocking(move || {
                state.catch_up().map_err(|e| error_chain(&e))?;
                let tree = state
                    .tree(crate::inspect::inventory_view::NAME)
                    .ok_or_else(|| "the state has no inventory view".to_owned())?;
                crate::inspect::inventory_view::load(&tree).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| ControlError::new("state", e.to_string()))?
            .map_err(|e| ControlError::new("state", e))?;
            serde_json::to_value(inventory).map_err(|e| ControlError::new("state", e.to_string()))
        }
        _ => Err(ControlError::new(
            "unknown_method",
            format!("unknown method {method}"),
        )),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
