//! Control method of the inspection concern: `inspect.alerts` journals alerts that an
//! `otgate inspect` run found while the daemon holds the journal, so that passive inspection
//! records to the same chain whether or not the appliance is serving.
//!
//! What it does not do: judge anything. The alerts arrive as `InspectEvent`s already made by the
//! monitor; this only appends them (durably, in order) and answers how many it recorded.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::{params, ControlError};
use crate::daemon::Appliance;
use crate::journal::event::{Event, InspectEvent};

/// The alerts to record.
#[derive(Debug, Deserialize)]
struct Alerts {
    alerts: Vec<InspectEvent>,
}

/// The most alerts one call may carry (the line limit bounds it too).
const MAX_ALERTS: usize = 1000;

/// Answer an `inspect.*` method.
pub async fn handle(app: &Arc<Appliance>, method: &str, p: Value) -> Result<Value, ControlError> {
    match method {
        "inspect.alerts" => {
            let Alerts { alerts } = params(method, p)?;
            if alerts.len() > MAX_ALERTS {
                return Err(ControlError::new(
                    "too_many",
                    format!("{} alerts in one call; at most {MAX_ALERTS}", alerts.len()),
                ));
            }
            let mut recorded = Vec::with_capacity(alerts.len());
            for alert in alerts {
                let receipt = app
                    .journal
                    .append(Event::Inspect(alert))
                    .await
                    .map_err(|e| ControlError::new("journal", e.to_string()))?;
                recorded.push(receipt.seq());
            }
            Ok(serde_json::json!({ "recorded": recorded.len(), "seqs": recorded }))
        }
        _ => Err(ControlError::new(
            "unknown_method",
            format!("unknown method {method}"),
        )),
    }
}
