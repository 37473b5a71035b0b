//! `otgate connect`: on the engineer's machine, a local Modbus TCP port tunnelled over TLS to the
//! appliance for one grant. Each local connection opens its own authenticated `Session` tunnel
//! (`tunnel::client`), and bytes are copied both ways unchanged: the appliance's broker enforces
//! the grant on every request, so this side decides nothing.
//!
//! The local port listens on loopback only (anyone who reaches it acts as you). It prints a line
//! when a session opens, when the local client leaves, and when the appliance closes the session
//! (window ended, grant revoked, session killed or idle).
//!
//! Beside the sessions, which stay raw Modbus, it keeps one authenticated `Status` tunnel open:
//! the appliance sends the grant's state at once, at each warning (10 and 2 minutes before the
//! end) and when it ends, and `connect` prints the warnings on your terminal and exits when the
//! grant is over. The first frame also names the grant's asset, so `--asset` may be left out.
//! If the status tunnel breaks (the appliance restarts), it is reopened with backoff.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::Globals;
use crate::daemon::it_side::StatusReply;
use crate::grants::service::GrantStatus;
use crate::tunnel::client::TunnelStream;
use crate::tunnel::profile::{ResolvedTunnel, TunnelArgs};
use crate::tunnel::Purpose;

/// How long `connect` waits for a status frame before it calls the status tunnel dead (the
/// appliance sends one at least every `STATUS_HEARTBEAT`).
const STATUS_SILENCE: Duration = Duration::from_secs(180);
/// The longest wait between attempts to reopen a broken status tunnel.
const MAX_STATUS_BACKOFF: Duration = Duration::from_secs(30);

/// Most local connections tunnelled at once.
const MAX_LOCAL_CONNECTIONS: usize = 16;

const AFTER_HELP: &str = "\
Point your Modbus tool at the local port; every request is checked against the grant on the
appliance, and refused ones get a Modbus exception (01 or 02). Warnings 10 and 2 minutes before
the grant ends are printed here; it exits when the grant is over, or when interrupted.

Example:
  otgate connect --grant G-0001 --listen 127.0.0.1:5020 --profile alice.toml
  mbpoll -m tcp -p 5020 -a 1 -r 100 127.0.0.1";

/// Arguments of `otgate connect`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct ConnectArgs {
    /// The active grant to use (`G-0001`).
    #[arg(long, value_name = "ID")]
    pub grant: String,
    /// The asset of the grant (`line3-plc`); by default the one the grant covers.
    #[arg(long, value_name = "ID")]
    pub asset: Option<String>,
    /// The local address your Modbus tool connects to (loopback only).
    #[arg(long, default_value = "127.0.0.1:5020", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Stop after the first local connection ends (scripts and tests).
    #[arg(long)]
    pub once: bool,
    /// How to reach the appliance and who you are.
    #[command(flatten)]
    pub tunnel: TunnelArgs,
}

/// Run `otgate connect`.
pub fn run(_globals: &Globals, args: ConnectArgs) -> anyhow::Result<ExitCode> {
    if !args.listen.ip().is_loopback() {
        return Err(super::hint(
            anyhow::anyhow!("--listen {} is not a loopback address", args.listen),
            "listen on 127.0.0.1 or ::1: anyone who reaches the port acts with your grant",
        ));
    }
    let tunnel = Arc::new(args.tunnel.resolve()?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args, tunnel))
}

/// Open the status tunnel of `grant` and read its first frame.
async fn open_status(
    tunnel: &ResolvedTunnel,
    grant: &str,
) -> anyhow::Result<(TunnelStream, StatusReply)> {
    let purpose = Purpose::Status {
        grant_id: grant.to_owned(),
    };
    let mut stream = tunnel.connect(purpose).await?;
    let first = next_frame(&mut stream).await?;
    Ok((stream, first))
}

async fn next_frame(stream: &mut TunnelStream) -> anyhow::Result<StatusReply> {
    let read = crate::tunnel::handshake::read_message(stream);
    match tokio::time::timeout(STATUS_SILENCE, read).await {
        Ok(frame) => Ok(frame?),
        Err(_) => anyhow::bail!("no status from the appliance for {STATUS_SILENCE:?}"),
    }
}

/// Print what is new in `status`; `true` once the grant is over.
fn show_status(status: &GrantStatus, warned: &mut BTreeSet<u32>) -> bool {
    for minutes in &status.warned {
        if warned.insert(*minutes) {
            println!(
                "warning: grant {} ends in {minutes} minutes (at {}); more time is a new request",
                status.grant_id,
                status.end.to_rfc3339()
            );
        }
    }
    if status.state.is_final() {
        println!(
            "grant {} is {}{}; sessions are closed",
            status.grant_id,
            status.state,
            status
                .outcome
                .as_deref()
                .map(|o| format!(": {o}"))
                .unwrap_or_default()
        );
        return true;
    }
    false
}

/// Follow the grant's status frames, reopening the tunnel when it breaks, until the grant is
/// over (then `over` fires) or the process stops.
async fn watch_status(
    tunnel: Arc<ResolvedTunnel>,
    grant: String,
    mut stream: TunnelStream,
    mut warned: BTreeSet<u32>,
    over: CancellationToken,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        match next_frame(&mut stream).await {
            Ok(StatusReply::Status(status)) => {
                backoff = Duration::from_secs(1);
                if show_status(&status, &mut warned) {
                    over.cancel();
                    return;
                }
                continue;
            }
            Ok(StatusReply::Refused { reason }) => {
                println!("the appliance no longer reports on grant {grant}: {reason}");
                over.cancel();
                return;
            }
            Err(error) => {
                eprintln!("otgate connect: lost the grant's status ({error}); reconnecting");
            }
        }
        loop {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_STATUS_BACKOFF);
            match open_status(&tunnel, &grant).await {
                Ok((again, StatusReply::Status(status))) => {
                    if show_status(&status, &mut warned) {
                        over.cancel();
                        return;
                    }
                    stream = again;
                    break;
                }
                Ok((_, StatusReply::Refused { reason })) => {
                    println!("the appliance no longer reports on grant {grant}: {reason}");
                    over.cancel();
                    return;
                }
                Err(error) => {
                    eprintln!("otgate connect: the status tunnel is still down ({error})");
                }
            }
        }
    }
}

async fn serve(args: ConnectArgs, tunnel: Arc<ResolvedTunnel>) -> anyhow::Result<ExitCode> {
    let (status_stream, first) = open_status(&tunnel, &args.grant).await.map_err(|e| {
        super::hint(
            e.context(format!(
                "cannot reach grant {} at {}",
                args.grant, tunnel.address
            )),
            "check --appliance, --pin and your key; `otgate request` prints your grant ids",
        )
    })?;
    let status = match first {
        StatusReply::Status(status) => status,
        StatusReply::Refused { reason } => {
            return Err(super::hint(
                anyhow::anyhow!("the appliance refuses grant {}: {reason}", args.grant),
                "connect with the grant id `otgate request` printed for you",
            ))
        }
    };
    if status.state.is_final() {
        return Err(super::hint(
            anyhow::anyhow!(
                "grant {} is {}{}",
                args.grant,
                status.state,
                status
                    .outcome
                    .as_deref()
                    .map(|o| format!(": {o}"))
                    .unwrap_or_default()
            ),
            "more time is a new request: otgate request ...",
        ));
    }
    let asset = match &args.asset {
        Some(given) if *given != status.asset => {
            return Err(super::hint(
                anyhow::anyhow!(
                    "--asset {given}: grant {} covers {}, not {given}",
                    args.grant,
                    status.asset
                ),
                "leave out --asset to use the grant's asset",
            ))
        }
        _ => status.asset.clone(),
    };
    println!(
        "grant {} on {asset}: {}, ends at {} ({} min left)",
        args.grant,
        status.state,
        status.end.to_rfc3339(),
        status.remaining_secs / 60
    );
    let over = CancellationToken::new();
    let mut warned = BTreeSet::new();
    show_status(&status, &mut warned);
    tokio::spawn(watch_status(
        Arc::clone(&tunnel),
        args.grant.clone(),
        status_stream,
        warned,
        over.clone(),
    ));
    let listener = TcpListener::bind(args.listen).await.map_err(|e| {
        super::hint(
            anyhow::anyhow!("cannot listen on {}: {e}", args.listen),
            "pick another port with --listen 127.0.0.1:PORT",
        )
    })?;
    let local = listener.local_addr().context("local address")?;
    println!(
        "listening on {local}: each connection opens a session on grant {} for {asset} at {}",
        args.grant, tunnel.address
    );
    let slots = Arc::new(Semaphore::new(MAX_LOCAL_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            () = over.cancelled() => return Ok(ExitCode::SUCCESS),
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                eprintln!("otgate connect: accepting a local connection failed: {error}");
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            eprintln!(
                "otgate connect: {peer} refused: {MAX_LOCAL_CONNECTIONS} local connections already open"
            );
            continue;
        };
        let purpose = Purpose::Session {
            grant_id: args.grant.clone(),
            asset: asset.clone(),
        };
        let tunnel = Arc::clone(&tunnel);
        let session = tokio::spawn(async move {
            let code = carry(stream, peer, &tunnel, purpose).await;
            drop(slot);
            code
        });
        if args.once {
            return Ok(session.await.unwrap_or(ExitCode::FAILURE));
        }
    }
}

/// Open a session tunnel for one local connection and copy bytes both ways until one side ends.
async fn carry(
    local: TcpStream,
    peer: SocketAddr,
    tunnel: &ResolvedTunnel,
    purpose: Purpose,
) -> ExitCode {
    let _ = local.set_nodelay(true);
    let remote = match tunnel.connect(purpose.clone()).await {
        Ok(remote) => remote,
        Err(error) => {
            eprintln!("otgate connect: the appliance refused the session for {peer}: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("session opened for {peer} ({})", purpose.describe());
    let (mut local_read, mut local_write) = local.into_split();
    let (mut remote_read, mut remote_write) = tokio::io::split(remote);
    let upward = tokio::io::copy(&mut local_read, &mut remote_write);
    let downward = tokio::io::copy(&mut remote_read, &mut local_write);
    tokio::select! {
        _ = upward => {
            println!("local client {peer} disconnected; session closed");
            let _ = remote_write.shutdown().await;
        }
        _ = downward => {
            println!(
                "the appliance closed the session for {peer} (window ended, grant revoked, session killed or idle)"
            );
            let _ = local_write.shutdown().await;
        }
    }
    ExitCode::SUCCESS
}
