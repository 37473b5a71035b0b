//! Passive inspection as a task of `otgate serve`: when `appliance.toml` has an `[inspect]`
//! table naming an interface, the daemon captures on it, receive only, for as long as it runs.
//!
//! ```toml
//! [inspect]
//! iface = "mirror0"                  # the mirror port (required to run the task)
//! baseline = "baseline.json"         # optional, from `otgate inspect learn` (relative: data dir)
//! events = "inspect-events.jsonl"    # optional: JSON lines appended (relative: data dir)
//! events_filter = "alerts"           # "alerts" (default) or "all" (every PDU too)
//! inventory_every = "60s"            # how often inventory changes are journaled
//! ```
//!
//! Writes are judged against the daemon's own grants, in process ([`LiveGrants`]: the grants
//! service's active grants, read again at most [`GRANTS_STALE_AFTER`] old and again before any
//! write is called unauthorized). Alerts are journaled and acted on as `otgate inspect` against
//! the control socket would be (`appliance::record_on_appliance`: `revoke_on` triggers), and
//! inventory changes are journaled every `inventory_every` for the `inventory` view.
//!
//! What it does not do: transmit (the socket of `live` never sends), or decide: policy decides
//! what an alert revokes, the grants service revokes. Guarantees: the capture thread stops
//! within 200 ms of shutdown; records flow to the journal through a bounded channel (the
//! capture waits rather than drop a record); a bad `[inspect]` table or an unknown interface
//! fails the daemon's start, naming the file and the field.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use otgate_policy::modbus::ModbusOp;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::alerts::Detector;
use super::baseline::Baseline;
use super::capture::Frame;
use super::event::Observation;
use super::grants::{GrantCoverage, GrantWindows};
use super::inventory_view::InventoryRecorder;
use super::live::{LiveCapture, LiveError};
use super::monitor::{Monitor, Sink};
use crate::daemon::Appliance;
use crate::datadir::DataDir;
use crate::grants::{GrantState, Grants, ListFilter};
use crate::journal::event::InspectEvent;

/// The grants snapshot is read again when older than this.
pub const GRANTS_STALE_AFTER: Duration = Duration::from_millis(250);
/// Records waiting for the journal before the capture waits for it.
const RECORD_BACKLOG: usize = 1024;
/// Default interval between inventory records.
const DEFAULT_INVENTORY_EVERY: Duration = Duration::from_secs(60);

/// Which observations go to the events file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventsFilter {
    /// Alerts only.
    #[default]
    Alerts,
    /// Every observation (PDUs, malformed frames, alerts).
    All,
}

/// The `[inspect]` table of `appliance.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InspectConfig {
    /// The interface to capture on; without one the task does not run.
    pub iface: Option<String>,
    /// A baseline to compare traffic with.
    pub baseline: Option<PathBuf>,
    /// A JSON lines file events are appended to.
    pub events: Option<PathBuf>,
    /// Which events go there.
    pub events_filter: EventsFilter,
    /// How often inventory changes are journaled.
    pub inventory_every: Duration,
}

/// Why the inspection task cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectServiceError {
    /// `appliance.toml` could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The `[inspect]` table is not valid.
    #[error("{}: [inspect]: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// The baseline named there does not load.
    #[error("[inspect] baseline")]
    Baseline(#[source] super::baseline::BaselineError),
    /// The events file cannot be opened for appending.
    #[error("[inspect] events: cannot open {}", path.display())]
    Events {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The capture socket cannot be opened on the interface.
    #[error("[inspect] iface")]
    Capture(#[source] LiveError),
}

#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(default)]
    inspect: Option<Table>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    iface: Option<String>,
    baseline: Option<PathBuf>,
    events: Option<PathBuf>,
    #[serde(default)]
    events_filter: EventsFilter,
    inventory_every: Option<String>,
}

impl InspectConfig {
    /// The `[inspect]` table of the data directory's `appliance.toml` (absent file or table:
    /// no capture). Relative paths are taken from the data directory.
    pub fn load(data_dir: &DataDir) -> Result<Self, InspectServiceError> {
        let path = data_dir.config_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(InspectServiceError::Io { path, source }),
        };
        let mut config = Self::from_toml(&text)
            .map_err(|reason| InspectServiceError::Invalid { path, reason })?;
        let root = data_dir.root();
        for p in [&mut config.baseline, &mut config.events]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = root.join(&*p);
            }
        }
        Ok(config)
    }

    /// Parse the `[inspect]` table out of `appliance.toml`'s text.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let Some(table) = file.inspect else {
            return Ok(Self::default());
        };
        let inventory_every = match &table.inventory_every {
            Some(text) => humantime::parse_duration(text)
                .map_err(|e| format!("inventory_every = {text:?}: {e} (e.g. \"60s\")"))?,
            None => DEFAULT_INVENTORY_EVERY,
        };
        if inventory_every.is_zero() {
            return Err("inventory_every must be more than 0s".into());
        }
        if table.iface.as_deref() == Some("") {
            return Err("iface is empty".into());
        }
        Ok(Self {
            iface: table.iface,
            baseline: table.baseline,
            events: table.events,
            events_filter: table.events_filter,
            inventory_every,
        })
    }
}

/// The inspection task, ready to run: configuration checked, baseline loaded, socket open.
#[derive(Debug)]
pub struct Prepared {
    capture: LiveCapture,
    baseline: Option<Baseline>,
    events: Option<(std::fs::File, EventsFilter)>,
    inventory_every: Duration,
}

/// Check the `[inspect]` table and open what the task needs, so that a bad configuration fails
/// the daemon's start; `None` when no interface is configured.
pub fn prepare(data_dir: &DataDir) -> Result<Option<Prepared>, InspectServiceError> {
    let config = InspectConfig::load(data_dir)?;
    let Some(iface) = &config.iface else {
        return Ok(None);
    };
    let baseline = config
        .baseline
        .as_deref()
        .map(Baseline::load)
        .transpose()
        .map_err(InspectServiceError::Baseline)?;
    let events = match &config.events {
        Some(path) => Some((open_append(path)?, config.events_filter)),
        None => None,
    };
    let capture = LiveCapture::open(iface).map_err(InspectServiceError::Capture)?;
    Ok(Some(Prepared {
        capture,
        baseline,
        events,
        inventory_every: config.inventory_every,
    }))
}

fn open_append(path: &Path) -> Result<std::fs::File, InspectServiceError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| InspectServiceError::Events {
            path: path.to_path_buf(),
            source,
        })
}

/// Run the inspection task until `shutdown`: the capture on a blocking thread, the journal
/// and the grants service on this task. Records still queued when the capture stops are
/// journaled before this returns.
pub async fn run(prepared: Prepared, app: Arc<Appliance>, shutdown: CancellationToken) {
    let (records, mut incoming) = mpsc::channel::<InspectEvent>(RECORD_BACKLOG);
    let stop = Arc::new(AtomicBool::new(false));
    let coverage = LiveGrants::new(Arc::clone(&app), tokio::runtime::Handle::current());
    let clock = Arc::clone(&app.clock);
    let iface = prepared.capture.iface().to_owned();
    let thread_stop = Arc::clone(&stop);
    let capture = tokio::task::spawn_blocking(move || {
        capture_loop(prepared, coverage, clock, &thread_stop, records)
    });
    tracing::info!(iface = %iface, "passive inspection running (receive only)");
    let stopper = tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            shutdown.cancelled().await;
            stop.store(true, Ordering::Relaxed);
        }
    });
    // Ends when the capture thread drops its sender, that is, once it stopped.
    while let Some(event) = incoming.recv().await {
        if let Err(e) = super::appliance::record_on_appliance(&app, event).await {
            tracing::error!(error = %e, "passive inspection: a record failed");
        }
    }
    stopper.abort();
    match capture.await {
        Ok(Ok(frames)) => tracing::info!(iface = %iface, frames, "passive inspection stopped"),
        Ok(Err(e)) => tracing::error!(iface = %iface, error = %e, "passive inspection failed"),
        Err(e) => tracing::error!(iface = %iface, error = %e, "passive inspection task failed"),
    }
}

/// Where the task's observations go: alerts to the journal (through the channel), and to the
/// events file when one is configured.
struct ServiceSink<'a> {
    records: &'a mpsc::Sender<InspectEvent>,
    events: Option<(std::io::BufWriter<std::fs::File>, EventsFilter)>,
    events_failed: bool,
}

impl Sink for ServiceSink<'_> {
    fn observe(&mut self, o: &Observation<'_>) {
        use std::io::Write;
        let alert = match o {
            Observation::Alert(a) => Some(*a),
            _ => None,
        };
        if let Some((file, filter)) = &mut self.events {
            if !self.events_failed && (alert.is_some() || *filter == EventsFilter::All) {
                if let Err(e) = writeln!(file, "{}", o.to_json()) {
                    tracing::error!(error = %e, "passive inspection: cannot write the events file");
                    self.events_failed = true;
                }
            }
        }
        if let Some(a) = alert {
            // Waits when the journal is behind: a record is never dropped. Fails only when the
            // task stopped listening, which it does only after the capture ended.
            let _ = self.records.blocking_send(InspectEvent::from_alert(a));
        }
    }
}

impl ServiceSink<'_> {
    fn flush(&mut self) {
        use std::io::Write;
        if let Some((file, _)) = &mut self.events {
            if !self.events_failed && file.flush().is_err() {
                self.events_failed = true;
            }
        }
    }
}

fn capture_time(clock: &crate::clock::SharedClock) -> Duration {
    let now = clock.now_utc();
    let secs = u64::try_from(now.timestamp()).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_nanos(u64::from(now.timestamp_subsec_nanos()))
}

fn capture_loop(
    prepared: Prepared,
    coverage: LiveGrants,
    clock: crate::clock::SharedClock,
    stop: &AtomicBool,
    records: mpsc::Sender<InspectEvent>,
) -> Result<u64, LiveError> {
    let Prepared {
        mut capture,
        baseline,
        events,
        inventory_every,
    } = prepared;
    let mut detector = Detector::new().with_grants(Box::new(coverage));
    if let Some(baseline) = baseline {
        detector = detector.with_baseline(baseline);
    }
    let mut monitor = Monitor::new(detector);
    let mut sink = ServiceSink {
        records: &records,
        events: events.map(|(file, filter)| (std::io::BufWriter::new(file), filter)),
        events_failed: false,
    };
    let mut recorder = InventoryRecorder::new();
    let mut record_inventory = |monitor: &Monitor, sink: &mut ServiceSink<'_>| {
        for event in recorder.changes(monitor.inventory()) {
            let _ = records.blocking_send(event);
        }
        sink.flush();
    };
    let mut next_inventory = Instant::now() + inventory_every;
    let mut frames = 0u64;
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(frames);
        }
        if Instant::now() >= next_inventory {
            record_inventory(&monitor, &mut sink);
            next_inventory = Instant::now() + inventory_every;
        }
        match capture.next_frame() {
            Ok(Some((link, data))) => {
                frames += 1;
                let frame = Frame {
                    ts: capture_time(&clock),
                    link,
                    data,
                };
                monitor.process(&frame, &mut sink);
            }
            Ok(None) => {}
            Err(e) => break Err(e),
        }
    };
    monitor.finish(&mut sink);
    record_inventory(&monitor, &mut sink);
    result
}

/// The daemon's own grants as coverage for `unauthorized_write`, read in process from the
/// grants service: the active grants, each a window from its activation to its end with its
/// scope's check. The snapshot is read again when older than [`GRANTS_STALE_AFTER`], and once
/// more before a write is called uncovered, so a grant activated a moment ago is never missed.
pub struct LiveGrants {
    app: Arc<Appliance>,
    runtime: tokio::runtime::Handle,
    /// When the snapshot was read (never, at first: the capture thread reads it) and what it
    /// holds.
    snapshot: Mutex<(Option<Instant>, GrantWindows)>,
}

impl std::fmt::Debug for LiveGrants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveGrants").finish_non_exhaustive()
    }
}

impl LiveGrants {
    /// Coverage from `app`'s grants service; `runtime` drives its calls from the capture thread
    /// (the grants are first read there, on first use: never on a runtime thread).
    pub fn new(app: Arc<Appliance>, runtime: tokio::runtime::Handle) -> Self {
        Self {
            app,
            runtime,
            snapshot: Mutex::new((None, GrantWindows::default())),
        }
    }

    fn with_snapshot<T>(&self, fresh: bool, f: impl FnOnce(&GrantWindows) -> T) -> T {
        let mut guard = match self.snapshot.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if fresh
            || guard
                .0
                .is_none_or(|read| read.elapsed() >= GRANTS_STALE_AFTER)
        {
            let windows = read_grants(&self.app.grants, &self.app.policy(), &self.runtime);
            *guard = (Some(Instant::now()), windows);
        }
        f(&guard.1)
    }
}

/// The active grants now, as windows over the policy's assets. Must not be called on a runtime
/// thread (it blocks on the grants service).
fn read_grants(
    grants: &Grants,
    policy: &otgate_policy::Policy,
    runtime: &tokio::runtime::Handle,
) -> GrantWindows {
    let mut windows =
        GrantWindows::new(policy.assets.iter().map(|a| (a.id.to_string(), a.address)));
    let records = runtime.block_on(grants.list(ListFilter::Active));
    for r in records
        .into_iter()
        .filter(|r| r.state == GrantState::Active)
    {
        let scope = serde_json::from_value::<otgate_policy::GrantScope>(r.scope.clone())
            .ok()
            .map(Arc::new);
        let id = r.grant_id.clone().unwrap_or_else(|| r.request_id.clone());
        windows.add(super::appliance::window(
            id,
            r.asset.clone(),
            scope,
            r.activated_at.unwrap_or(r.start),
            r.end,
        ));
    }
    windows
}

impl GrantCoverage for LiveGrants {
    fn covers(&self, dst: IpAddr, port: u16, op: &ModbusOp, at: DateTime<Utc>) -> bool {
        self.with_snapshot(false, |w| w.covers(dst, port, op, at))
            || self.with_snapshot(true, |w| w.covers(dst, port, op, at))
    }

    fn asset(&self, dst: IpAddr, port: u16) -> Option<String> {
        self.with_snapshot(false, |w| w.asset(dst, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inspect_table_reads_with_defaults_and_bad_fields_are_named() {
        assert_eq!(
            InspectConfig::from_toml("").unwrap(),
            InspectConfig::default()
        );
        assert_eq!(
            InspectConfig::from_toml("[journal]\nbudget = \"1GiB\"\n").unwrap(),
            InspectConfig::default(),
            "other tables are not ours"
        );
        let c = InspectConfig::from_toml(
            "[inspect]\niface = \"mirror0\"\nevents = \"e.jsonl\"\nevents_filter = \"all\"\ninventory_every = \"5s\"\n",
        )
        .unwrap();
        assert_eq!(c.iface.as_deref(), Some("mirror0"));
        assert_eq!(c.events_filter, EventsFilter::All);
        assert_eq!(c.inventory_every, Duration::from_secs(5));
        for (bad, names) in [
            ("[inspect]\niface = \"m\"\nifcae = 1\n", "ifcae"),
            ("[inspect]\ninventory_every = \"soon\"\n", "inventory_every"),
            ("[inspect]\ninventory_every = \"0s\"\n", "inventory_every"),
            ("[inspect]\nevents_filter = \"some\"\n", "some"),
            ("[inspect]\niface = \"\"\n", "iface"),
        ] {
            let err = InspectConfig::from_toml(bad).unwrap_err();
            assert!(err.contains(names), "{bad}: {err}");
        }
    }

    #[test]
    fn prepare_refuses_an_unknown_interface_and_relative_paths_are_the_data_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = DataDir::new(dir.path());
        assert!(
            prepare(&data_dir).unwrap().is_none(),
            "no appliance.toml: no task"
        );
        std::fs::write(
            data_dir.config_file(),
            "[inspect]\niface = \"no-such-if0\"\nbaseline = \"b.json\"\n",
        )
        .unwrap();
        let config = InspectConfig::load(&data_dir).unwrap();
        assert_eq!(config.baseline, Some(dir.path().join("b.json")));
        let err = prepare(&data_dir).unwrap_err();
        assert!(matches!(err, InspectServiceError::Baseline(_)), "{err:?}");
        std::fs::write(
            data_dir.config_file(),
            "[inspect]\niface = \"no-such-if0\"\n",
        )
        .unwrap();
        let err = prepare(&data_dir).unwrap_err();
        assert!(
            matches!(
                err,
                InspectServiceError::Capture(LiveError::NoSuchInterface { .. })
            ),
            "{err:?}"
        );
    }
}
