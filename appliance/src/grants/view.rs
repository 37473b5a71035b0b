//! The grants view in sled (`state::View`): one entry per request, rebuilt from the journal's
//! access records, so `otgate grants` and a restarting daemon read requests and grants without
//! replaying the whole journal.
//!
//! Keys: `r/<request id>` holds `{ "seq": last applied, "record": GrantRecord }`, and
//! `g/<grant id>` holds the request id. Idempotent: a record is skipped by an entry that has
//! already applied its sequence number (after a crash sled may see a record again).

use serde::{Deserialize, Serialize};

use super::registry::{GrantRecord, Registry};
use crate::journal::event::{AccessEvent, Event, Subjects};
use crate::state::View;

/// The sled tree name of the grants view.
pub const NAME: &str = "grants";

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    seq: u64,
    record: GrantRecord,
}

/// Requests and grants as a state view.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrantsView;

fn io(e: impl std::fmt::Display) -> sled::Error {
    sled::Error::Unsupported(format!("grants view: {e}"))
}

fn request_key(id: &str) -> Vec<u8> {
    format!("r/{id}").into_bytes()
}

fn grant_key(id: &str) -> Vec<u8> {
    format!("g/{id}").into_bytes()
}

impl View for GrantsView {
    fn name(&self) -> &'static str {
        NAME
    }

    fn apply(&self, tree: &sled::Tree, seq: u64, event: &Event) -> Result<(), sled::Error> {
        let Event::Access(access) = event else {
            return Ok(());
        };
        if let AccessEvent::ReviewImported { request_ids, .. } = access {
            // One record signs off several grants: apply it to each of their requests.
            for request_id in request_ids {
                self.apply_to(tree, seq, access, request_id.clone())?;
            }
            return Ok(());
        }
        let request_id = match access.request_id() {
            Some(id) => id.to_owned(),
            None => match access.grant() {
                Some(g) => match tree.get(grant_key(g))? {
                    Some(id) => String::from_utf8_lossy(&id).into_owned(),
                    None => return Ok(()),
                },
                None => return Ok(()),
            },
        };
        self.apply_to(tree, seq, access, request_id)
    }
}

impl GrantsView {
    fn apply_to(
        &self,
        tree: &sled::Tree,
        seq: u64,
        access: &AccessEvent,
        request_id: String,
    ) -> Result<(), sled::Error> {
        let existing: Option<Entry> = match tree.get(request_key(&request_id))? {
            Some(bytes) => Some(serde_json::from_slice(&bytes).map_err(io)?),
            None => None,
        };
        if existing.as_ref().is_some_and(|e| e.seq >= seq) {
            return Ok(());
        }
        let mut one = Registry::from_records(existing.map(|e| e.record));
        if let Err(e) = one.apply(access) {
            // Recorded by the journal, refused by the lifecycle: keep the view as it was.
            tracing::warn!(seq, error = %e, "grants view: record does not apply");
            return Ok(());
        }
        let Some(record) = one.find(&request_id).cloned() else {
            return Ok(());
        };
        if let Some(g) = &record.grant_id {
            tree.insert(grant_key(g), request_id.as_bytes())?;
        }
        let entry = serde_json::to_vec(&Entry { seq, record }).map_err(io)?;
        tree.insert(request_key(&request_id), entry)?;
        Ok(())
    }
}

/// The registry held by the view's tree.
pub fn load(tree: &sled::Tree) -> Result<Registry, sled::Error> {
    let mut records = Vec::new();
    for item in tree.scan_prefix(b"r/") {
        let (_, bytes) = item?;
        let entry: Entry = serde_json::from_slice(&bytes).map_err(io)?;
        records.push(entry.record);
    }
    Ok(Registry::from_records(records))
}

/// Whether `event` is one the view keeps (for callers that filter).
pub fn concerns(event: &AccessEvent) -> bool {
    !matches!(event, AccessEvent::Refused { .. })
}
