//! Broker sessions as the journal tells them: every session that started, how it ended, and
//! what it forwarded and refused. `otgate sessions` lists past sessions from here (live ones
//! come from the running daemon), and the daemon closes, on start, the sessions a crash cut.
//!
//! A session with a `session_started` record and no `session_ended` one was cut by an abrupt
//! stop of the appliance (crash, power loss, SIGKILL): no session survives a restart, so it is
//! over. [`close_unclean`] journals its end (`ended_unclean`) once, at the next start, with the
//! counts the journal holds; until then readers show it as "ended (unclean)" unless the daemon
//! says it is live.
//!
//! It reads the journal with [`JournalReader`] (no lock, no key) and writes only through
//! [`Journal::append`]; it reads no recording (those are detail for `otgate replay`).

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::journal::event::{Event, SessionEndReason, SessionEvent, SessionSubject};
use crate::journal::read::{JournalReader, ReadError};
use crate::journal::{Journal, JournalError};

/// One session as the journal records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournaledSession {
    /// Session, grant, identity, asset.
    #[serde(flatten)]
    pub subject: SessionSubject,
    /// The PLC address forwarded to.
    pub upstream: String,
    /// When its start was journaled.
    pub started_at: DateTime<Utc>,
    /// The seq of its `session_started` record.
    pub started_seq: u64,
    /// When its end was journaled, if it was.
    pub ended_at: Option<DateTime<Utc>>,
    /// Why it ended, if its end was journaled.
    pub end_reason: Option<SessionEndReason>,
    /// `operation_forwarded` records of the session.
    pub forwarded: u64,
    /// `operation_refused` records of the session.
    pub refused: u64,
}

/// Every session the journal in `journal_dir` knows, in the order they started, reading the
/// records up to `up_to_seq` (all of them if `None`).
pub fn journaled_sessions(
    journal_dir: &Path,
    up_to_seq: Option<u64>,
) -> Result<Vec<JournaledSession>, ReadError> {
    let mut sessions: Vec<JournaledSession> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for record in JournalReader::open(journal_dir)? {
        let record = record?;
        if up_to_seq.is_some_and(|last| record.seq > last) {
            break;
        }
        let Event::Session(event) = record.event else {
            continue;
        };
        match event {
            SessionEvent::SessionStarted { subject, upstream } => {
                index.insert(subject.session_id.clone(), sessions.len());
                sessions.push(JournaledSession {
                    subject,
                    upstream,
                    started_at: record.wall_time,
                    started_seq: record.seq,
                    ended_at: None,
                    end_reason: None,
                    forwarded: 0,
                    refused: 0,
                });
            }
            SessionEvent::OperationForwarded { subject, .. } => {
                if let Some(session) = find(&mut sessions, &index, &subject.session_id) {
                    session.forwarded += 1;
                }
            }
            SessionEvent::OperationRefused { subject, .. } => {
                if let Some(session) = find(&mut sessions, &index, &subject.session_id) {
                    session.refused += 1;
                }
            }
            SessionEvent::SessionEnded {
                subject, reason, ..
            } => {
                if let Some(session) = find(&mut sessions, &index, &subject.session_id) {
                    session.ended_at = Some(record.wall_time);
                    session.end_reason = Some(reason);
                }
            }
            _ => {}
        }
    }
    Ok(sessions)
}

fn find<'a>(
    sessions: &'a mut [JournaledSession],
    index: &HashMap<String, usize>,
    session_id: &str,
) -> Option<&'a mut JournaledSession> {
    index.get(session_id).and_then(|i| sessions.get_mut(*i))
}

/// Why the unclean sessions could not be closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// The journal could not be read.
    #[error("cannot read the journal's session records")]
    Read(#[from] ReadError),
    /// The end of a cut session could not be journaled.
    #[error("cannot journal the end of session {session_id}")]
    Append {
        /// The session.
        session_id: String,
        /// The journal's error.
        #[source]
        source: JournalError,
    },
}

/// Journal the end of every session that started at or before `up_to_seq` and has no end
/// record: the appliance stopped under it. Call it at daemon start with the journal's head
/// before any session can start, so no session of this run is touched. Returns the ids closed.
pub async fn close_unclean(journal: &Journal, up_to_seq: u64) -> Result<Vec<String>, HistoryError> {
    let dir = journal.dir().to_path_buf();
    let sessions = tokio::task::spawn_blocking(move || journaled_sessions(&dir, Some(up_to_seq)))
        .await
        .map_err(|e| ReadError::Io {
            path: journal.dir().to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })??;
    let mut closed = Vec::new();
    for session in sessions.into_iter().filter(|s| s.end_reason.is_none()) {
        let session_id = session.subject.session_id.clone();
        let ended = SessionEvent::SessionEnded {
            subject: session.subject,
            reason: SessionEndReason::Unclean {
                detail: format!(
                    "the appliance stopped before the session ended (started at seq {})",
                    session.started_seq
                ),
            },
            forwarded: session.forwarded,
            refused: session.refused,
        };
        journal
            .append(Event::Session(ended))
            .await
            .map_err(|source| HistoryError::Append {
                session_id: session_id.clone(),
                source,
            })?;
        tracing::warn!(session = %session_id, "a session cut by an abrupt stop is journaled as ended (unclean)");
        closed.push(session_id);
    }
    Ok(closed)
}

/// [`close_unclean`] for the daemon's start: failures are traced, never fatal (the sessions
/// stay "ended (unclean)" to readers, and the next start tries again).
pub async fn close_unclean_at_start(journal: Journal, up_to_seq: u64) {
    match close_unclean(&journal, up_to_seq).await {
        Ok(closed) if !closed.is_empty() => {
            tracing::info!(
                count = closed.len(),
                "sessions cut by an abrupt stop journaled as ended"
            );
        }
        Ok(_) => {}
        Err(error) => {
            tracing::error!(%error, "cannot journal the end of sessions cut by an abrupt stop");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(id: &str) -> SessionSubject {
        SessionSubject {
            session_id: id.into(),
            grant_id: "G-0001".into(),
            identity: "alice".into(),
            asset_id: "line3-plc".into(),
        }
    }

    fn started(id: &str) -> Event {
        Event::Session(SessionEvent::SessionStarted {
            subject: subject(id),
            upstream: "127.0.0.1:502".into(),
        })
    }

    #[tokio::test]
    async fn a_session_without_an_end_is_closed_once_as_unclean_and_later_ones_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open_for_tests(dir.path()).unwrap();
        journal.append(started("S-cut")).await.unwrap();
        journal
            .append(Event::Session(SessionEvent::OperationForwarded {
                subject: subject("S-cut"),
                request: crate::journal::event::ModbusRequestRecord {
                    transaction_id: 1,
                    unit: 1,
                    function: 3,
                    ops: Vec::new(),
                    values: Vec::new(),
                },
            }))
            .await
            .unwrap();
        journal.append(started("S-done")).await.unwrap();
        journal
            .append(Event::Session(SessionEvent::SessionEnded {
                subject: subject("S-done"),
                reason: SessionEndReason::ClientClosed,
                forwarded: 0,
                refused: 0,
            }))
            .await
            .unwrap();
        let head = journal.head().seq;
        // A session of "this run", after the head: not touched.
        journal.append(started("S-now")).await.unwrap();

        let closed = close_unclean(&journal, head).await.unwrap();
        assert_eq!(closed, vec!["S-cut".to_owned()]);
        let sessions = journaled_sessions(journal.dir(), None).unwrap();
        let cut = sessions
            .iter()
            .find(|s| s.subject.session_id == "S-cut")
            .unwrap();
        assert!(
            matches!(cut.end_reason, Some(SessionEndReason::Unclean { .. })),
            "{cut:?}"
        );
        assert_eq!((cut.forwarded, cut.refused), (1, 0));
        let now = sessions
            .iter()
            .find(|s| s.subject.session_id == "S-now")
            .unwrap();
        assert_eq!(now.end_reason, None);
        // Once closed, a second start closes nothing more.
        let head = journal.head().seq;
        let again = close_unclean(&journal, head).await.unwrap();
        assert_eq!(again, vec!["S-now".to_owned()]);
        assert!(close_unclean(&journal, journal.head().seq)
            .await
            .unwrap()
            .is_empty());
    }
}
