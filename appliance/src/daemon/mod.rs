//! The long-running appliance (`otgate serve`): [`run`] wires journal, policy, grants, the
//! control socket and the IT-side listener together and owns the shutdown broadcast.
//!
//! Tasks, each with one job: the control server (`control::serve`), the IT-side listener
//! (`it_side.rs`: TLS, authentication, requests and broker sessions, bounded by
//! [`DaemonConfig::max_sessions`]), and the expiry task (`Grants::run_expiry`). All of them
//! select on one [`CancellationToken`]; [`run`] returns once they have stopped. The daemon does
//! not decide anything itself: policy decides, grants keeps the lifecycle, the journal records.
//!
//! On start the grants registry is rebuilt from the journal, grants that ran out while the daemon
//! was down are ended, and the timers of the others resume.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{broadcast, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::control::Notice;
use crate::datadir::DataDir;
use crate::grants::{Grants, Registry};
use crate::journal::event::Event;
use crate::journal::{Journal, JournalConfig};

pub mod it_side;
pub mod session;

/// How many notices a slow follower may fall behind before it skips some.
pub const NOTICE_BACKLOG: usize = 1024;

/// Where the daemon's policy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// The active signed bundle in the data directory (`otgate policy import`).
    ActiveBundle,
    /// An unsigned policy file, for tests only: nothing verifies who wrote it.
    DangerUnsignedFile(PathBuf),
}

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The data directory.
    pub data_dir: DataDir,
    /// Where the policy comes from.
    pub policy: PolicySource,
    /// The most IT-side connections served at once (requests and sessions).
    pub max_sessions: usize,
    /// How long the broker waits for a PLC's answer.
    pub upstream_timeout: Duration,
    /// How long an IT-side client may take to finish TLS and authentication.
    pub handshake_timeout: Duration,
    /// Told once the daemon serves (for `otgate serve`'s `ready` line).
    pub ready: Option<tokio::sync::mpsc::UnboundedSender<()>>,
    /// The signed policy while running (bundle validity, imports, periodic pull): loaded by
    /// [`run`] from the data directory; an unsigned, never-lapsing placeholder before that.
    pub bundles: Arc<crate::bundles::live::LivePolicy>,
}

impl DaemonConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: DataDir, policy: PolicySource) -> Self {
        Self {
            data_dir,
            policy,
            max_sessions: 256,
            upstream_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            ready: None,
            bundles: Arc::new(crate::bundles::live::LivePolicy::unsigned()),
        }
    }
}

/// The daemon's bound sockets (bound before [`run`], so tests can use port 0).
#[derive(Debug)]
pub struct Listeners {
    /// The control socket (`DataDir::control_socket()`).
    pub control: UnixListener,
    /// The IT-side TLS listener.
    pub it: TcpListener,
}

impl Listeners {
    /// Bind the control socket at `control` (mode 0600) and the IT side at `it`.
    pub async fn bind(control: &std::path::Path, it: SocketAddr) -> Result<Self, DaemonError> {
        let control_listener =
            crate::control::bind(control)
                .await
                .map_err(|source| DaemonError::Bind {
                    what: control.display().to_string(),
                    source,
                })?;
        let it_listener = TcpListener::bind(it)
            .await
            .map_err(|source| DaemonError::Bind {
                what: it.to_string(),
                source,
            })?;
        Ok(Self {
            control: control_listener,
            it: it_listener,
        })
    }
}

/// Why the daemon could not start or stopped with a failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// A socket could not be bound.
    #[error("cannot listen on {what}: {source}")]
    Bind {
        /// The address or path.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The appliance key could not be loaded (is the data directory initialized?).
    #[error("appliance key: {0}")]
    Key(String),
    /// The journal could not be opened or read.
    #[error("journal: {0}")]
    Journal(String),
    /// No usable policy.
    #[error("policy: {0}")]
    Policy(String),
    /// The TLS configuration could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// Grants could not be resumed.
    #[error("grants: {0}")]
    Grants(#[from] crate::grants::GrantError),
    /// The `[inspect]` table of appliance.toml is invalid, or its interface cannot be captured.
    #[error("passive inspection")]
    Inspect(#[from] crate::inspect::service::InspectServiceError),
}

/// What every part of the running daemon shares (the control handlers get it).
#[derive(Debug)]
pub struct Appliance {
    /// The data directory.
    pub data_dir: DataDir,
    /// Wall and monotonic time.
    pub clock: SharedClock,
    /// The journal: every decision goes here before it takes effect.
    pub journal: Journal,
    /// The sled views (grants, sessions, inventory), kept up with the journal.
    pub state: crate::state::State,
    /// The active policy.
    pub policy: RwLock<Arc<otgate_policy::Policy>>,
    /// Requests and grants.
    pub grants: Arc<Grants>,
    /// The OT store, to authenticate approvers and operators at the console (`None` when it
    /// could not be opened: console actions are then refused).
    pub ot_store: Option<crate::stores::ot::OtStore>,
    /// Notices to followers of the control socket (warnings, ends, revocations).
    pub notices: broadcast::Sender<Notice>,
    /// Bounds the IT-side connections served at once.
    pub sessions: Arc<Semaphore>,
    /// How the daemon runs.
    pub config: DaemonConfig,
    /// Fires when the daemon stops; every task selects on it.
    pub shutdown: CancellationToken,
}

impl Appliance {
    /// The active policy now.
    pub fn policy(&self) -> Arc<otgate_policy::Policy> {
        match self.policy.read() {
            Ok(p) => Arc::clone(&p),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Make `policy` the active one and revoke grants it no longer covers.
    pub async fn activate_policy(
        &self,
        policy: Arc<otgate_policy::Policy>,
    ) -> Result<Vec<String>, crate::grants::GrantError> {
        match self.policy.write() {
            Ok(mut p) => *p = Arc::clone(&policy),
            Err(poisoned) => *poisoned.into_inner() = Arc::clone(&policy),
        }
        let access = self.config.bundles.access(policy, self.clock.now_utc());
        self.grants.policy_changed(Arc::new(access)).await
    }
}

fn load_policy(config: &DaemonConfig) -> Result<Arc<otgate_policy::Policy>, DaemonError> {
    match &config.policy {
        PolicySource::DangerUnsignedFile(path) => {
            let source = std::fs::read_to_string(path)
                .map_err(|e| DaemonError::Policy(format!("cannot read {}: {e}", path.display())))?;
            let file = path.display().to_string();
            otgate_policy::parse(&source, &file)
                .map(Arc::new)
                .map_err(|d| DaemonError::Policy(d.to_string()))
        }
        PolicySource::ActiveBundle => match crate::bundles::load_active(&config.data_dir) {
            Ok(Some(active)) => {
                tracing::info!(version = active.version, "active signed policy loaded");
                Ok(active.policy)
            }
            Ok(None) => Err(DaemonError::Policy(
                "no active signed policy bundle in the data directory".to_owned(),
            )),
            Err(e) => Err(DaemonError::Policy(e.to_string())),
        },
    }
}

/// Rebuild the grants registry from the journal's access records.
pub fn registry_from_journal(dir: &std::path::Path) -> Result<Registry, DaemonError> {
    let mut registry = Registry::new();
    let reader = crate::journal::read::JournalReader::open(dir)
        .map_err(|e| DaemonError::Journal(e.to_string()))?;
    for record in reader {
        let record = record.map_err(|e| DaemonError::Journal(e.to_string()))?;
        if let Event::Access(event) = &record.event {
            if let Err(e) = registry.apply(event) {
                tracing::error!(seq = record.seq, error = %e, "journal record does not apply");
            }
        }
    }
    Ok(registry)
}

/// How often the sled views catch up with the journal while the daemon runs.
pub const STATE_CATCH_UP: Duration = Duration::from_secs(1);

/// Keep the sled views up with the journal (and once more at shutdown).
async fn keep_state_current(state: crate::state::State, shutdown: CancellationToken) {
    loop {
        let stopping = tokio::select! {
            () = shutdown.cancelled() => true,
            () = tokio::time::sleep(STATE_CATCH_UP) => false,
        };
        let s = state.clone();
        match tokio::task::spawn_blocking(move || s.catch_up()).await {
            Ok(Err(e)) => tracing::warn!(error = %e, "state: catching up failed"),
            Err(e) => tracing::warn!(error = %e, "state: catch-up task failed"),
            Ok(Ok(_)) => {}
        }
        if stopping {
            return;
        }
    }
}

/// Run the appliance until `shutdown` fires.
pub async fn run(
    config: DaemonConfig,
    listeners: Listeners,
    clock: SharedClock,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let data_dir = config.data_dir.clone();
    let key = crate::journal::keys::load_appliance_key(&data_dir.appliance_key())
        .map_err(|e| DaemonError::Key(e.to_string()))?;
    // The `[journal]` settings of appliance.toml (budget, reserve, segments, checkpoints).
    let journal_config = JournalConfig {
        clock: Arc::clone(&clock),
        ..JournalConfig::load(&data_dir).map_err(|e| DaemonError::Journal(e.to_string()))?
    };
    let journal = Journal::open(&data_dir.journal_dir(), key, journal_config)
        .map_err(|e| DaemonError::Journal(e.to_string()))?;
    // The `[export]` table of appliance.toml: a SIEM exporter that runs with the daemon.
    let exporter = crate::journal::export::Exporter::from_config(&data_dir, &journal)
        .map_err(|e| DaemonError::Journal(e.to_string()))?;
    let policy = load_policy(&config)?;
    let live = Arc::new(
        crate::bundles::live::LivePolicy::load(&config)
            .map_err(|e| DaemonError::Policy(e.to_string()))?,
    );
    let config = DaemonConfig {
        bundles: Arc::clone(&live),
        ..config
    };
    let state = crate::state::State::open(&data_dir, &journal)
        .map_err(|e| DaemonError::Journal(format!("state: {e}")))?;
    let registry = match state.tree(crate::grants::view::NAME) {
        Some(tree) => crate::grants::view::load(&tree)
            .map_err(|e| DaemonError::Journal(format!("grants view: {e}")))?,
        None => registry_from_journal(&data_dir.journal_dir())?,
    };
    let (notices, _) = broadcast::channel(NOTICE_BACKLOG);
    let grants = Grants::new(
        registry,
        Arc::new(journal.clone()),
        Arc::new(live.access(Arc::clone(&policy), clock.now_utc())),
        Arc::clone(&clock),
        notices.clone(),
    );
    grants.resume().await?;
    let ot_store = match crate::stores::ot::OtStore::open(&data_dir.ot_store_dir()) {
        Ok(store) => Some(store),
        Err(e) => {
            tracing::error!(error = %e, "the OT store cannot be opened; console actions are refused");
            None
        }
    };
    let app = Arc::new(Appliance {
        data_dir,
        clock,
        journal,
        state: state.clone(),
        policy: RwLock::new(policy),
        grants: Arc::clone(&grants),
        ot_store,
        notices,
        sessions: Arc::new(Semaphore::new(config.max_sessions)),
        config,
        shutdown: shutdown.clone(),
    });
    let tls = it_side::load_tls(&app)?;
    // Passive inspection of the mirror port, when appliance.toml's [inspect] names one.
    let inspection = crate::inspect::service::prepare(&app.data_dir)?;
    let mut tasks = tokio::task::JoinSet::new();
    // Sessions an abrupt stop cut (started before this run, never ended) are journaled as ended.
    let head_before_sessions = app.journal.head().seq;
    tasks.spawn(crate::broker::modbus::history::close_unclean_at_start(
        app.journal.clone(),
        head_before_sessions,
    ));
    if let Some(prepared) = inspection {
        tasks.spawn(crate::inspect::service::run(
            prepared,
            Arc::clone(&app),
            shutdown.clone(),
        ));
    }
    tasks.spawn(Arc::clone(&grants).run_expiry(shutdown.clone()));
    tasks.spawn(keep_state_current(state, shutdown.clone()));
    tasks.spawn(crate::bundles::live::run(
        Arc::clone(&app),
        shutdown.clone(),
    ));
    if let Some(exporter) = exporter {
        tasks.spawn(exporter.run(shutdown.clone()));
    }
    tasks.spawn(crate::control::serve(
        listeners.control,
        Arc::clone(&app),
        shutdown.clone(),
    ));
    tasks.spawn(it_side::serve(
        listeners.it,
        tls,
        Arc::clone(&app),
        shutdown.clone(),
    ));
    tracing::info!("otgate daemon running");
    if let Some(ready) = &app.config.ready {
        let _ = ready.send(());
    }
    shutdown.cancelled().await;
    while tasks.join_next().await.is_some() {}
    let _ = std::fs::remove_file(app.data_dir.control_socket());
    tracing::info!("otgate daemon stopped");
    Ok(())
}
