//! The lifecycle of one access request and the grant it may become: [`GrantState`] and the table
//! of every legal move ([`check_move`]).
//!
//! This file is pure: it knows no journal, no clock and no I/O. The one function that journals
//! and applies a move is `Grants::transition` (`grants/service.rs`), which asks [`check_move`]
//! first; an illegal move is an error naming both states and changes nothing.
//!
//! ```text
//!             ┌────────── deny / policy deny ─────────► Denied
//!   submit ──►│ Requested ── approvals complete ──► Approved ── start reached ──► Active
//!             │     └── window passed unapproved ──► Expired        │   └─ revoke ─► Revoked
//!             ├── auto / emergency (start later) ──► Approved        ├── end, idle, last disconnect ─► Ended
//!             └── auto / emergency (start now) ────────────────────► Active ── revoke ─► Revoked
//! ```

use serde::{Deserialize, Serialize};

/// Where a request or grant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantState {
    /// Submitted and allowed by policy, waiting for OT approvals.
    Requested,
    /// Approved (by people or by policy), waiting for its window to start.
    Approved,
    /// Its window is open: sessions may run within its scope.
    Active,
    /// Its window closed: time ran out, it went idle, its last session left, or its user closed it.
    Ended,
    /// Revoked by an OT user, a policy change, an account expiry or a policy trigger.
    Revoked,
    /// Refused by policy when submitted, or denied by an OT approver.
    Denied,
    /// Its window passed before it was approved or could start.
    Expired,
}

impl GrantState {
    /// Whether nothing can happen to it any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Ended | Self::Revoked | Self::Denied | Self::Expired
        )
    }

    /// Whether it waits for a person (approval) or a time (start).
    pub fn is_pending(self) -> bool {
        matches!(self, Self::Requested | Self::Approved)
    }

    /// The state as the CLI and the JSON show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Approved => "approved",
            Self::Active => "active",
            Self::Ended => "ended",
            Self::Revoked => "revoked",
            Self::Denied => "denied",
            Self::Expired => "expired",
        }
    }
}

impl std::fmt::Display for GrantState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A move the lifecycle does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal move from {from} to {to}")]
pub struct IllegalMove {
    /// Where it stood (`None`: it did not exist yet).
    pub from: StateOrNew,
    /// Where the move wanted to take it.
    pub to: GrantState,
}

/// A state, or "not yet submitted".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateOrNew {
    /// Not submitted yet.
    New,
    /// An existing state.
    State(GrantState),
}

impl std::fmt::Display for StateOrNew {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::New => f.write_str("new"),
            Self::State(s) => s.fmt(f),
        }
    }
}

/// Every legal move, and nothing else. `from = None` is a new submission.
pub fn check_move(from: Option<GrantState>, to: GrantState) -> Result<(), IllegalMove> {
    use GrantState::*;
    let legal = match from {
        // A submission is decided at once: waits for approvers, is approved by policy (auto or
        // emergency) for a later start, starts now, or is refused by policy.
        None => matches!(to, Requested | Approved | Active | Denied),
        Some(Requested) => matches!(to, Approved | Denied | Expired | Revoked),
        Some(Approved) => matches!(to, Active | Expired | Revoked),
        Some(Active) => matches!(to, Ended | Revoked),
        Some(Ended | Revoked | Denied | Expired) => false,
    };
    if legal {
        Ok(())
    } else {
        Err(IllegalMove {
            from: from.map_or(StateOrNew::New, StateOrNew::State),
            to,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::GrantState::*;
    use super::*;

    const ALL: [GrantState; 7] = [Requested, Approved, Active, Ended, Revoked, Denied, Expired];

    #[test]
    fn final_states_never_move() {
        for from in ALL.into_iter().filter(|s| s.is_final()) {
            for to in ALL {
                assert!(check_move(Some(from), to).is_err(), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn nothing_moves_back_to_requested_or_skips_approval() {
        for from in ALL {
            assert!(
                check_move(Some(from), Requested).is_err(),
                "{from} -> requested"
            );
        }
        assert!(check_move(Some(Requested), Active).is_err());
        assert!(check_move(None, Ended).is_err());
    }

    #[test]
    fn the_happy_paths_are_legal() {
        for (from, to) in [
            (None, Requested),
            (Some(Requested), Approved),
            (Some(Approved), Active),
            (Some(Active), Ended),
            (Some(Active), Revoked),
            (None, Active),
            (Some(Requested), Denied),
            (Some(Requested), Expired),
        ] {
            assert_eq!(check_move(from, to), Ok(()), "{from:?} -> {to}");
        }
    }

    #[test]
    fn an_illegal_move_names_both_states() {
        let e = check_move(Some(Ended), Active).unwrap_err();
        assert_eq!(e.to_string(), "illegal move from ended to active");
        let e = check_move(None, Revoked).unwrap_err();
        assert_eq!(e.to_string(), "illegal move from new to revoked");
    }
}
