//! The appliance's queryable state in sled: a materialized view of the journal, holding nothing
//! that the journal cannot rebuild.
//!
//! Each concern keeps its view in its own sled tree through the [`View`] trait; this module
//! feeds every view the journal's records in order, exactly as the journal holds them, and
//! remembers the last record applied (seq and hash). sled is kept behind this narrow module:
//! other modules see a [`View`] and the [`sled::Tree`] it owns, nothing else.
//!
//! On [`State::open`] it replays what sled lacks. If sled is missing, will not open (sled 0.34
//! can fail or even panic on a database damaged by an abrupt stop), holds no state marker, was
//! built by a different set of views, is ahead of the journal, or has diverged from it (the
//! record at its last-applied seq has another hash), the directory is moved aside to
//! `state.old-<time>` and rebuilt from the journal, and a `JournalEvent::StateRebuilt` is
//! journaled. `otgate state rebuild` forces that.
//!
//! Views must be idempotent: after a crash a record may be applied again (sled loses its
//! unflushed writes; the journal does not). Key by ids, never count increments.

pub mod index;
pub mod registry;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::datadir::DataDir;
use crate::journal::event::{Event, JournalEvent};
use crate::journal::read::{JournalReader, JournalTail, ReadError};
use crate::journal::{Journal, JournalError, Recorded};

/// A sled view of the journal, owned by one concern (grants, sessions, inventory, ...).
pub trait View: Send + Sync {
    /// The view's name, also its sled tree's name (unique, snake_case).
    fn name(&self) -> &'static str;
    /// The layout version: bump it and the state is rebuilt on the next open.
    fn version(&self) -> u32 {
        1
    }
    /// Apply one journal record to the view's tree. Must be idempotent (see the module doc).
    fn apply(&self, tree: &sled::Tree, seq: u64, event: &Event) -> Result<(), sled::Error>;
}

/// Why the state could not be opened, caught up or rebuilt.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// sled failed (after a rebuild was already tried, or while applying).
    #[error("state store at {}: {reason}", path.display())]
    Store {
        /// The state directory.
        path: PathBuf,
        /// sled's message.
        reason: String,
    },
    /// A view failed to apply a record.
    #[error("view `{view}` failed on record seq {seq}: {reason}")]
    View {
        /// The view.
        view: &'static str,
        /// The record.
        seq: u64,
        /// Its message.
        reason: String,
    },
    /// Two views share a name.
    #[error("two views are named `{0}`")]
    DuplicateView(&'static str),
    /// The journal could not be read.
    #[error("cannot read the journal")]
    Read(#[from] ReadError),
    /// The journal refused the `state_rebuilt` record.
    #[error("cannot journal the rebuild")]
    Journal(#[from] JournalError),
    /// A file operation failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// How the state was found on open.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "opened", rename_all = "snake_case")]
pub enum Opened {
    /// It was usable; `replayed` records it lacked were applied.
    Replayed {
        /// Records applied on open.
        replayed: u64,
    },
    /// It was rebuilt from the journal.
    Rebuilt {
        /// Why.
        reason: String,
        /// Where the old directory went, if there was one.
        moved_aside: Option<PathBuf>,
    },
}

/// Every view's entries (key, value), by view name: what `dump` and `fresh_dump` return.
pub type Dump = BTreeMap<String, Vec<(Vec<u8>, Vec<u8>)>>;

const META_TREE: &str = "__otgate_state";
const KEY_FORMAT: &[u8] = b"format";
const KEY_VIEWS: &[u8] = b"views";
const KEY_SEQ: &[u8] = b"last_applied_seq";
const KEY_HASH: &[u8] = b"last_applied_hash";
const FORMAT: &[u8] = b"otgate-state-1";

struct Inner {
    dir: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    views: Vec<(Arc<dyn View>, sled::Tree)>,
    journal: Journal,
    /// The journal position up to which views are applied; held while applying, so records
    /// are applied one at a time and in order.
    tail: Mutex<JournalTail>,
    opened: Opened,
}

/// The open state: sled views kept in step with the journal. Cheap to clone.
#[derive(Clone)]
pub struct State {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("dir", &self.inner.dir)
            .field("opened", &self.inner.opened)
            .finish()
    }
}

fn store_error(path: &Path) -> impl Fn(sled::Error) -> StateError + '_ {
    move |e| StateError::Store {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Open sled at `dir`, turning a panic inside sled into an error.
fn open_sled(dir: &Path) -> Result<sled::Db, String> {
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        sled::Config::new().path(dir).open()
    }));
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(format!(
            "sled panicked: {}",
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    }
}

fn views_signature(views: &[Arc<dyn View>]) -> Vec<u8> {
    let list: Vec<String> = views
        .iter()
        .map(|v| format!("{}@{}", v.name(), v.version()))
        .collect();
    list.join(",").into_bytes()
}

impl State {
    /// Open the appliance's state with every registered view ([`registry::appliance_views`]).
    /// Blocking (sled, and a journal append if it rebuilds): call it at startup or from
    /// `spawn_blocking`.
    pub fn open(data_dir: &DataDir, journal: &Journal) -> Result<State, StateError> {
        Self::open_with_views(data_dir, journal, registry::appliance_views())
    }

    /// Open with these views (plus the built-in audit index); replay, or rebuild if needed.
    pub fn open_with_views(
        data_dir: &DataDir,
        journal: &Journal,
        views: Vec<Arc<dyn View>>,
    ) -> Result<State, StateError> {
        let views = with_builtin(views)?;
        let dir = data_dir.state_dir();
        if !dir.exists() {
            return Self::build(data_dir, journal, views, "missing".into(), false);
        }
        let db = match open_sled(&dir) {
            Ok(db) => db,
            Err(e) => {
                return Self::build(
                    data_dir,
                    journal,
                    views,
                    format!("would not open ({e})"),
                    true,
                )
            }
        };
        match check(&db, journal, &views) {
            Ok(None) => {
                let state =
                    Self::assemble(dir, db, journal, views, Opened::Replayed { replayed: 0 })?;
                let replayed = state.catch_up()?;
                let mut state = state;
                if let Some(inner) = Arc::get_mut(&mut state.inner) {
                    inner.opened = Opened::Replayed { replayed };
                }
                if replayed > 0 {
                    tracing::info!(replayed, "state: replayed journal records sled lacked");
                }
                Ok(state)
            }
            Ok(Some(reason)) => {
                drop(db);
                Self::build(data_dir, journal, views, reason, true)
            }
            Err(e) => {
                drop(db);
                Self::build(data_dir, journal, views, format!("unreadable ({e})"), true)
            }
        }
    }

    /// Move the state aside and rebuild it from the journal, whatever its condition.
    pub fn rebuild(
        data_dir: &DataDir,
        journal: &Journal,
        reason: &str,
    ) -> Result<State, StateError> {
        Self::rebuild_with_views(data_dir, journal, registry::appliance_views(), reason)
    }

    /// [`State::rebuild`] with these views.
    pub fn rebuild_with_views(
        data_dir: &DataDir,
        journal: &Journal,
        views: Vec<Arc<dyn View>>,
        reason: &str,
    ) -> Result<State, StateError> {
        let views = with_builtin(views)?;
        let exists = data_dir.state_dir().exists();
        Self::build(data_dir, journal, views, reason.into(), exists)
    }

    fn build(
        data_dir: &DataDir,
        journal: &Journal,
        views: Vec<Arc<dyn View>>,
        reason: String,
        move_aside: bool,
    ) -> Result<State, StateError> {
        let dir = data_dir.state_dir();
        let moved_aside = if move_aside && dir.exists() {
            Some(move_aside_dir(data_dir)?)
        } else {
            None
        };
        if moved_aside.is_some() {
            tracing::warn!(%reason, moved_aside = ?moved_aside, "state: rebuilding from the journal");
        } else {
            tracing::info!(%reason, "state: building from the journal");
        }
        let db = open_sled(&dir).map_err(|reason| StateError::Store {
            path: dir.clone(),
            reason,
        })?;
        let meta = db.open_tree(META_TREE).map_err(store_error(&dir))?;
        let mut batch = sled::Batch::default();
        batch.insert(KEY_FORMAT, FORMAT);
        batch.insert(KEY_VIEWS, views_signature(&views));
        batch.insert(KEY_SEQ, &0u64.to_be_bytes());
        meta.apply_batch(batch).map_err(store_error(&dir))?;
        let opened = Opened::Rebuilt {
            reason: reason.clone(),
            moved_aside: moved_aside.clone(),
        };
        let state = Self::assemble(dir.clone(), db, journal, views, opened)?;
        state.catch_up()?;
        let relative = moved_aside.as_ref().map(|p| {
            p.strip_prefix(data_dir.root())
                .unwrap_or(p)
                .display()
                .to_string()
        });
        journal.append_reserved_blocking(Event::Journal(JournalEvent::StateRebuilt {
            reason,
            moved_aside: relative,
            applied_seq: state.last_applied(),
        }))?;
        state.catch_up()?;
        state.inner.db.flush().map_err(store_error(&dir))?;
        Ok(state)
    }

    fn assemble(
        dir: PathBuf,
        db: sled::Db,
        journal: &Journal,
        views: Vec<Arc<dyn View>>,
        opened: Opened,
    ) -> Result<State, StateError> {
        let meta = db.open_tree(META_TREE).map_err(store_error(&dir))?;
        let mut trees = Vec::with_capacity(views.len());
        for view in views {
            let tree = db.open_tree(view.name()).map_err(store_error(&dir))?;
            trees.push((view, tree));
        }
        let last = read_u64(&meta, KEY_SEQ)
            .map_err(store_error(&dir))?
            .unwrap_or(0);
        Ok(State {
            inner: Arc::new(Inner {
                tail: Mutex::new(JournalTail::new(journal.dir(), last + 1)),
                dir,
                db,
                meta,
                views: trees,
                journal: journal.clone(),
                opened,
            }),
        })
    }

    /// How the state was found when it was opened.
    pub fn opened(&self) -> &Opened {
        &self.inner.opened
    }

    /// The last journal record applied to every view (0 for none).
    pub fn last_applied(&self) -> u64 {
        read_u64(&self.inner.meta, KEY_SEQ)
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    /// Apply every durable journal record the views have not seen yet; returns how many.
    pub fn catch_up(&self) -> Result<u64, StateError> {
        let inner = &self.inner;
        let limit = inner.journal.head().seq;
        let mut tail = inner.tail.lock().map_err(|_| StateError::Store {
            path: inner.dir.clone(),
            reason: "a thread panicked while applying records".into(),
        })?;
        tail.read_each(limit, |record| {
            for (view, tree) in &inner.views {
                view.apply(tree, record.seq, &record.event)
                    .map_err(|e| StateError::View {
                        view: view.name(),
                        seq: record.seq,
                        reason: e.to_string(),
                    })?;
            }
            let mut batch = sled::Batch::default();
            batch.insert(KEY_SEQ, &record.seq.to_be_bytes());
            batch.insert(KEY_HASH, &record.hash);
            inner
                .meta
                .apply_batch(batch)
                .map_err(store_error(&inner.dir))
        })
    }

    /// Append `event` to the journal, then bring the views up to it (read-your-writes).
    pub async fn append(&self, event: Event) -> Result<Recorded, StateError> {
        let recorded = self.inner.journal.append(event).await?;
        self.catch_up()?;
        Ok(recorded)
    }

    /// [`State::append`] from synchronous code.
    pub fn append_blocking(&self, event: Event) -> Result<Recorded, StateError> {
        let recorded = self.inner.journal.append_blocking(event)?;
        self.catch_up()?;
        Ok(recorded)
    }

    /// The tree of the view named `name`, to read it.
    pub fn tree(&self, name: &str) -> Option<sled::Tree> {
        self.inner
            .views
            .iter()
            .find(|(v, _)| v.name() == name)
            .map(|(_, t)| t.clone())
    }

    /// The names of the views.
    pub fn view_names(&self) -> Vec<&'static str> {
        self.inner.views.iter().map(|(v, _)| v.name()).collect()
    }

    /// Every view's content, for comparing two states (tests, `otgate state status --deep`).
    pub fn dump(&self) -> Result<Dump, StateError> {
        let mut out = BTreeMap::new();
        for (view, tree) in &self.inner.views {
            let mut entries = Vec::new();
            for entry in tree.iter() {
                let (k, v) = entry.map_err(store_error(&self.inner.dir))?;
                entries.push((k.to_vec(), v.to_vec()));
            }
            out.insert(view.name().to_string(), entries);
        }
        Ok(out)
    }

    /// Write sled's buffers to disk (not needed for safety: the journal is the truth).
    pub fn flush(&self) -> Result<(), StateError> {
        self.inner
            .db
            .flush()
            .map(|_| ())
            .map_err(store_error(&self.inner.dir))
    }
}

/// Build the views from the journal in `journal_dir` into a temporary sled (nothing is kept or
/// journaled) up to record `up_to`, and return their content: what a fresh rebuild would hold.
pub fn fresh_dump(
    journal_dir: &Path,
    views: Vec<Arc<dyn View>>,
    up_to: u64,
) -> Result<Dump, StateError> {
    let views = with_builtin(views)?;
    let db = sled::Config::new()
        .temporary(true)
        .open()
        .map_err(store_error(journal_dir))?;
    let mut trees = Vec::new();
    for view in &views {
        trees.push((
            view.clone(),
            db.open_tree(view.name())
                .map_err(store_error(journal_dir))?,
        ));
    }
    for record in JournalReader::open(journal_dir)? {
        let record = record?;
        if record.seq > up_to {
            break;
        }
        for (view, tree) in &trees {
            view.apply(tree, record.seq, &record.event)
                .map_err(|e| StateError::View {
                    view: view.name(),
                    seq: record.seq,
                    reason: e.to_string(),
                })?;
        }
    }
    let mut out = BTreeMap::new();
    for (view, tree) in &trees {
        let mut entries = Vec::new();
        for entry in tree.iter() {
            let (k, v) = entry.map_err(store_error(journal_dir))?;
            entries.push((k.to_vec(), v.to_vec()));
        }
        out.insert(view.name().to_string(), entries);
    }
    Ok(out)
}

fn with_builtin(views: Vec<Arc<dyn View>>) -> Result<Vec<Arc<dyn View>>, StateError> {
    let mut all: Vec<Arc<dyn View>> = vec![Arc::new(index::AuditIndex)];
    for view in views {
        if all.iter().any(|v| v.name() == view.name()) || view.name() == META_TREE {
            return Err(StateError::DuplicateView(view.name()));
        }
        all.push(view);
    }
    Ok(all)
}

fn read_u64(tree: &sled::Tree, key: &[u8]) -> Result<Option<u64>, sled::Error> {
    Ok(tree
        .get(key)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map(u64::from_be_bytes))
}

/// Whether an opened sled can be used as is: `None`, or the reason to rebuild it.
fn check(
    db: &sled::Db,
    journal: &Journal,
    views: &[Arc<dyn View>],
) -> Result<Option<String>, String> {
    let meta = db.open_tree(META_TREE).map_err(|e| e.to_string())?;
    if meta.get(KEY_FORMAT).map_err(|e| e.to_string())?.as_deref() != Some(FORMAT) {
        return Ok(Some("no state marker (empty or foreign database)".into()));
    }
    if meta.get(KEY_VIEWS).map_err(|e| e.to_string())?.as_deref()
        != Some(views_signature(views).as_slice())
    {
        return Ok(Some("the set of views changed".into()));
    }
    let Some(seq) = read_u64(&meta, KEY_SEQ).map_err(|e| e.to_string())? else {
        return Ok(Some("no last-applied mark".into()));
    };
    let head = journal.head().seq;
    if seq > head {
        return Ok(Some(format!(
            "ahead of the journal (applied seq {seq}, journal head {head})"
        )));
    }
    if seq > 0 {
        let stored = meta.get(KEY_HASH).map_err(|e| e.to_string())?;
        let record = JournalReader::from_seq(journal.dir(), seq)
            .map_err(|e| e.to_string())?
            .next();
        let matches = match (&stored, record) {
            (Some(stored), Some(Ok(record))) => {
                record.seq == seq && stored.as_ref() == record.hash.as_slice()
            }
            _ => false,
        };
        if !matches {
            return Ok(Some(format!("diverged from the journal at seq {seq}")));
        }
    }
    Ok(None)
}

fn move_aside_dir(data_dir: &DataDir) -> Result<PathBuf, StateError> {
    let dir = data_dir.state_dir();
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    for n in 0..1000u32 {
        let name = if n == 0 {
            format!("state.old-{stamp}")
        } else {
            format!("state.old-{stamp}-{n}")
        };
        let target = data_dir.root().join(name);
        if target.exists() {
            continue;
        }
        std::fs::rename(&dir, &target).map_err(|source| StateError::Io {
            action: "move aside",
            path: dir.clone(),
            source,
        })?;
        return Ok(target);
    }
    Err(StateError::Io {
        action: "find a free name beside",
        path: dir,
        source: std::io::Error::other("1000 state.old-* directories already exist"),
    })
}

#[cfg(test)]
mod tests;
