//! `otgate serve`: run the appliance daemon until SIGINT or SIGTERM.
//!
//! Thin: it binds the sockets, prints one `ready` line (so scripts and tests learn the bound
//! port when `--listen` asks for port 0), and hands over to `daemon::run`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{hint, Globals};
use crate::daemon::{self, DaemonConfig, Listeners, PolicySource};

const AFTER_HELP: &str = "\
Prints `ready it=ADDR control=PATH` on stdout once it accepts connections; stops on SIGINT or
SIGTERM after closing every session.

Example:
  otgate serve --data-dir /var/lib/otgate --listen 0.0.0.0:8443";

/// Arguments of `otgate serve`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct ServeArgs {
    /// The IT-side TLS listen address.
    #[arg(long, default_value = "0.0.0.0:8443", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The control socket (default: control.sock in the data directory).
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// The most IT-side connections (requests and sessions) served at once.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_sessions: usize,
    /// FOR TESTS ONLY: use this unsigned policy file instead of the active signed bundle.
    #[arg(long, value_name = "FILE")]
    pub danger_unsigned_policy: Option<PathBuf>,
    /// FOR TESTS AND THE DEMO ONLY: start the wall clock at this RFC 3339 instant (it then
    /// advances in real time); grants still end on the monotonic clock.
    #[arg(long, value_name = "TIME", hide = true)]
    pub danger_clock_start: Option<chrono::DateTime<chrono::FixedOffset>>,
}

/// Run `otgate serve`.
pub fn run(globals: &Globals, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(globals, args))
}

async fn serve(globals: &Globals, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let data_dir = globals.data_dir.clone();
    if !data_dir.appliance_key().exists() {
        return Err(hint(
            anyhow::anyhow!(
                "{} is not an initialized appliance",
                data_dir.root().display()
            ),
            format!("run: otgate init --data-dir {}", data_dir.root().display()),
        ));
    }
    let policy = match args.danger_unsigned_policy {
        Some(path) => {
            tracing::warn!(path = %path.display(), "running on an UNSIGNED policy file (tests only)");
            PolicySource::DangerUnsignedFile(path)
        }
        None => PolicySource::ActiveBundle,
    };
    let mut config = DaemonConfig::new(data_dir.clone(), policy);
    config.max_sessions = args.max_sessions;
    let control = args.control.unwrap_or_else(|| data_dir.control_socket());
    let listeners = Listeners::bind(&control, args.listen).await?;
    let it = listeners.it.local_addr()?;
    let shutdown = CancellationToken::new();
    let signals = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        signals.cancel();
    });
    let clock: crate::clock::SharedClock = match args.danger_clock_start {
        Some(start) => {
            tracing::warn!(%start, "running on a MANUAL wall clock (tests and demo only)");
            Arc::new(crate::clock::ManualClock::starting_at(
                start.with_timezone(&chrono::Utc),
            ))
        }
        None => Arc::new(crate::clock::SystemClock),
    };
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
    config.ready = Some(ready_tx);
    let daemon = daemon::run(config, listeners, clock, shutdown);
    tokio::pin!(daemon);
    let result = tokio::select! {
        result = &mut daemon => result,
        Some(()) = ready_rx.recv() => {
            println!("ready it={it} control={}", control.display());
            let _ = std::io::stdout().flush();
            daemon.await
        }
    };
    result.map_err(|e| match e {
        daemon::DaemonError::Policy(_) => hint(
            e,
            "import a signed bundle: otgate policy import BUNDLE (tests: --danger-unsigned-policy FILE)",
        ),
        daemon::DaemonError::Key(_) | daemon::DaemonError::Tls(_) => hint(
            e,
            format!("initialize the appliance: otgate init --data-dir {}", data_dir.root().display()),
        ),
        other => anyhow::Error::new(other),
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
