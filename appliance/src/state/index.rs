//! The built-in view: an index of journal records by kind, actor, asset, grant and session,
//! so that queries need not read the whole journal. Keys are `field/value/seq` (seq big-endian),
//! values empty; applying a record twice writes the same keys (idempotent).

use crate::journal::event::{Event, Subjects};

use super::View;

/// The audit index view (tree `audit_index`).
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditIndex;

/// The index key for `field` = `value` at `seq`.
pub fn key(field: &str, value: &str, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(field.len() + value.len() + 10);
    key.extend_from_slice(field.as_bytes());
    key.push(b'/');
    key.extend_from_slice(value.as_bytes());
    key.push(b'/');
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The seqs of the records whose `field` is `value`, in order.
pub fn seqs(tree: &sled::Tree, field: &str, value: &str) -> Result<Vec<u64>, sled::Error> {
    let mut prefix = key(field, value, 0);
    prefix.truncate(prefix.len() - 8);
    let mut out = Vec::new();
    for entry in tree.scan_prefix(&prefix) {
        let (k, _) = entry?;
        if let Some(seq) = k
            .get(prefix.len()..)
            .and_then(|s| <[u8; 8]>::try_from(s).ok())
        {
            out.push(u64::from_be_bytes(seq));
        }
    }
    Ok(out)
}

impl View for AuditIndex {
    fn name(&self) -> &'static str {
        "audit_index"
    }

    fn apply(&self, tree: &sled::Tree, seq: u64, event: &Event) -> Result<(), sled::Error> {
        let kind = format!("{}.{}", event.category(), event.kind());
        let mut batch = sled::Batch::default();
        batch.insert(key("kind", &kind, seq), &[]);
        for (field, value) in [
            ("actor", event.actor()),
            ("asset", event.asset()),
            ("grant", event.grant()),
            ("session", event.session()),
        ] {
            if let Some(value) = value {
                batch.insert(key(field, value, seq), &[]);
            }
        }
        tree.apply_batch(batch)
    }
}
