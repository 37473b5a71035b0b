//! Tests of the sled state against a real journal in a tempdir.

use super::*;
use crate::journal::event::Subjects;

fn note(text: &str) -> Event {
    Event::Journal(JournalEvent::Note {
        actor: Some("alice".into()),
        text: text.into(),
    })
}

/// A view that keeps the last seq of every note by its text (idempotent).
struct Notes;

impl View for Notes {
    fn name(&self) -> &'static str {
        "notes"
    }
    fn apply(&self, tree: &sled::Tree, seq: u64, event: &Event) -> Result<(), sled::Error> {
        if let Event::Journal(JournalEvent::Note { text, .. }) = event {
            tree.insert(text.as_bytes(), &seq.to_be_bytes())?;
        }
        Ok(())
    }
}

fn views() -> Vec<Arc<dyn View>> {
    vec![Arc::new(Notes)]
}

fn rebuilt_records(journal: &Journal) -> Vec<(String, Option<String>)> {
    JournalReader::open(journal.dir())
        .unwrap()
        .filter_map(|r| match r.unwrap().event {
            Event::Journal(JournalEvent::StateRebuilt {
                reason,
                moved_aside,
                ..
            }) => Some((reason, moved_aside)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_missing_state_is_built_and_the_build_is_journaled() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = DataDir::new(root.path());
    let journal = Journal::open_for_tests(root.path()).unwrap();
    journal.append_blocking(note("before")).unwrap();
    let state = State::open_with_views(&data_dir, &journal, views()).unwrap();
    assert_eq!(
        state.opened(),
        &Opened::Rebuilt {
            reason: "missing".into(),
            moved_aside: None
        }
    );
    assert_eq!(state.last_applied(), journal.head().seq);
    assert_eq!(rebuilt_records(&journal), [("missing".to_string(), None)]);
    assert!(state
        .tree("notes")
        .unwrap()
        .get("before")
        .unwrap()
        .is_some());
}

#[test]
fn appends_through_the_state_are_visible_at_once_and_indexed() {
    let root = tempfile::tempdir().unwrap();
    let journal = Journal::open_for_tests(root.path()).unwrap();
    let state = State::open_with_views(&DataDir::new(root.path()), &journal, views()).unwrap();
    let recorded = state.append_blocking(note("one")).unwrap();
    assert_eq!(state.last_applied(), recorded.seq());
    let seq = state.tree("notes").unwrap().get("one").unwrap().unwrap();
    assert_eq!(
        u64::from_be_bytes(seq.as_ref().try_into().unwrap()),
        recorded.seq()
    );
    let index = state.tree("audit_index").unwrap();
    assert_eq!(
        index::seqs(&index, "actor", "alice").unwrap(),
        [recorded.seq()]
    );
    assert_eq!(
        index::seqs(&index, "kind", "journal.note").unwrap(),
        [recorded.seq()]
    );
    assert_eq!(note("x").kind(), "note");
}

#[test]
fn a_state_that_is_behind_replays_what_it_lacks() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = DataDir::new(root.path());
    let journal = Journal::open_for_tests(root.path()).unwrap();
    drop(State::open_with_views(&data_dir, &journal, views()).unwrap());
    journal.append_blocking(note("a")).unwrap();
    journal.append_blocking(note("b")).unwrap();
    let state = State::open_with_views(&data_dir, &journal, views()).unwrap();
    assert_eq!(state.opened(), &Opened::Replayed { replayed: 2 });
    assert!(state.tree("notes").unwrap().get("b").unwrap().is_some());
    assert_eq!(
        state.dump().unwrap(),
        fresh_dump(journal.dir(), views(), state.last_applied()).unwrap()
    );
}

#[test]
fn a_corrupt_state_is_moved_aside_rebuilt_and_journaled() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = DataDir::new(root.path());
    let journal = Journal::open_for_tests(root.path()).unwrap();
    let state = State::open_with_views(&data_dir, &journal, views()).unwrap();
    for i in 0..20 {
        state.append_blocking(note(&format!("n{i}"))).unwrap();
    }
    state.flush().unwrap();
    drop(state);
    // Overwrite every file in the sled directory with garbage.
    for entry in walk(&data_dir.state_dir()) {
        let len = std::fs::metadata(&entry).unwrap().len().max(64) as usize;
        std::fs::write(&entry, vec![0xA5; len]).unwrap();
    }
    let state = State::open_with_views(&data_dir, &journal, views()).unwrap();
    let Opened::Rebuilt {
        reason,
        moved_aside: Some(aside),
    } = state.opened().clone()
    else {
        panic!("{:?}", state.opened())
    };
    assert!(aside.exists());
    assert!(aside
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("state.old-"));
    let journaled = rebuilt_records(&journal);
    assert_eq!(journaled.last().unwrap().0, reason);
    assert!(journaled
        .last()
        .unwrap()
        .1
        .as_deref()
        .unwrap()
        .starts_with("state.old-"));
    assert!(state.tree("notes").unwrap().get("n19").unwrap().is_some());
    assert_eq!(
        state.dump().unwrap(),
        fresh_dump(journal.dir(), views(), state.last_applied()).unwrap()
    );
}

#[test]
fn a_state_ahead_of_or_diverged_from_the_journal_is_rebuilt() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = DataDir::new(root.path());
    {
        let journal = Journal::open_for_tests(root.path()).unwrap();
        let state = State::open_with_views(&data_dir, &journal, views()).unwrap();
        for i in 0..10 {
            state.append_blocking(note(&format!("n{i}"))).unwrap();
        }
    }
    // A different journal under the same state: sled is ahead of it.
    std::fs::remove_dir_all(data_dir.journal_dir()).unwrap();
    let journal = Journal::open_for_tests(root.path()).unwrap();
    let state = State::open_with_views(&data_dir, &journal, views()).unwrap();
    match state.opened() {
        Opened::Rebuilt { reason, .. } => {
            assert!(reason.contains("ahead of the journal"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(state.tree("notes").unwrap().get("n9").unwrap().is_none());
    drop(state);
    drop(journal);
    // Another fresh journal, grown past the state's mark: the hashes differ.
    std::fs::remove_dir_all(data_dir.journal_dir()).unwrap();
    let journal = Journal::open_for_tests(root.path()).unwrap();
    for i in 0..20 {
        journal.append_blocking(note(&format!("m{i}"))).unwrap();
    }
    let state = State::open_with_views(&data_dir, &journal, views()).unwrap();
    match state.opened() {
        Opened::Rebuilt { reason, .. } => assert!(reason.contains("diverged"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn changing_the_views_rebuilds_and_a_forced_rebuild_is_journaled() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = DataDir::new(root.path());
    let journal = Journal::open_for_tests(root.path()).unwrap();
    drop(State::open_with_views(&data_dir, &journal, vec![]).unwrap());
    let state = State::open_with_views(&data_dir, &journal, views()).unwrap();
    assert!(
        matches!(state.opened(), Opened::Rebuilt { reason, .. } if reason == "the set of views changed")
    );
    drop(state);
    let state = State::rebuild_with_views(&data_dir, &journal, views(), "forced by test").unwrap();
    assert!(matches!(
        state.opened(),
        Opened::Rebuilt {
            moved_aside: Some(_),
            ..
        }
    ));
    assert_eq!(
        rebuilt_records(&journal).last().unwrap().0,
        "forced by test"
    );
    assert!(matches!(
        State::open_with_views(&data_dir, &journal, vec![Arc::new(index::AuditIndex)]),
        Err(StateError::DuplicateView("audit_index"))
    ));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
