//! Events about the journal itself: creation, each open, torn tails cut, signed checkpoints,
//! the disk budget, and the sled state rebuilt from the journal.
//!
//! `Created`, `Opened`, `TailCut`, `Checkpoint` and `BudgetLow` are written only by the journal's
//! writer; `Journal::append` refuses them from anyone else (see [`JournalEvent::is_internal`]).

use serde::{Deserialize, Serialize};

use super::Subjects;

/// Events about the journal itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum JournalEvent {
    /// The journal was created; its checkpoints are signed by this key.
    Created {
        /// The appliance's ed25519 public key, hex.
        public_key: String,
        /// Its short id (the first 8 bytes of its SHA-256, hex).
        key_id: String,
    },
    /// A writer opened the journal (the appliance started). Monotonic times restart here.
    Opened {
        /// The last sequence number found on open (0 for none).
        head_seq: u64,
        /// The writer's process id.
        pid: u32,
        /// The last writer did not close cleanly (a crash, a kill, or records cut): the signed
        /// head marker did not name the journal's last record as a clean close.
        #[serde(default)]
        unclean_stop: bool,
        /// The checkpoint seq that the signed head marker named at this open, if there was one.
        /// Above `head_seq`, records were cut from the end while the appliance was down.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signed_head_seq: Option<u64>,
    },
    /// Bytes at the end of the last segment that did not form valid records (a crash during a
    /// write, or damage) were cut on open. They were never acknowledged; a copy is kept aside.
    TailCut {
        /// The segment file name.
        segment: String,
        /// Where the cut began (byte offset in the segment).
        offset: u64,
        /// How many bytes were cut.
        bytes: u64,
        /// Why the first cut byte did not start a valid record.
        reason: String,
        /// Where the cut bytes were saved (file name under `journal/torn/`).
        saved_as: String,
    },
    /// A signed statement that the chain up to `covers_seq` ends in `head_hash`.
    Checkpoint {
        /// The last record covered (the record just before this one).
        covers_seq: u64,
        /// That record's hash, hex.
        head_hash: String,
        /// The id of the signing key (first 8 bytes of SHA-256 of the public key, hex).
        key_id: String,
        /// ed25519 signature, hex, over `otgate-journal-checkpoint-v1` ‖ covers_seq (u64 LE) ‖ head hash.
        signature: String,
        /// Why the checkpoint was written.
        reason: CheckpointReason,
    },
    /// The journal reached its budget less the reserve: normal appends are refused from now on
    /// (fail closed), reserved ones (denials, break-glass) still go to the reserve.
    BudgetLow {
        /// Bytes used by the journal's segments.
        used_bytes: u64,
        /// The configured budget.
        budget_bytes: u64,
        /// The reserve kept for denials and break-glass.
        reserve_bytes: u64,
    },
    /// A note written into the journal by an operator or a tool (also used by the crash tests).
    Note {
        /// Who wrote it, if known.
        actor: Option<String>,
        /// The note.
        text: String,
    },
    /// The sled state was rebuilt from the journal.
    StateRebuilt {
        /// Why: missing, would not open, behind the journal, ahead of the journal, forced.
        reason: String,
        /// Where the old state directory was moved (relative to the data dir), if it existed.
        moved_aside: Option<String>,
        /// The last journal sequence number applied by the rebuild.
        applied_seq: u64,
    },
}

/// Why a checkpoint was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointReason {
    /// Every N records or seconds.
    Periodic,
    /// The last record of a segment that is being closed.
    SegmentClose,
    /// The writer closed cleanly.
    Shutdown,
}

impl JournalEvent {
    /// Whether only the journal's own writer may write this event.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            JournalEvent::Created { .. }
                | JournalEvent::Opened { .. }
                | JournalEvent::TailCut { .. }
                | JournalEvent::Checkpoint { .. }
                | JournalEvent::BudgetLow { .. }
        )
    }
}

impl Subjects for JournalEvent {
    fn kind(&self) -> &'static str {
        match self {
            JournalEvent::Created { .. } => "created",
            JournalEvent::Opened { .. } => "opened",
            JournalEvent::TailCut { .. } => "tail_cut",
            JournalEvent::Checkpoint { .. } => "checkpoint",
            JournalEvent::BudgetLow { .. } => "budget_low",
            JournalEvent::StateRebuilt { .. } => "state_rebuilt",
            JournalEvent::Note { .. } => "note",
        }
    }

    fn actor(&self) -> Option<&str> {
        match self {
            JournalEvent::Note { actor, .. } => actor.as_deref(),
            _ => None,
        }
    }
}
