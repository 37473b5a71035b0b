//! `otgate connect`: on the engineer's machine, a local Modbus TCP port tunnelled over TLS to the
//! appliance for one grant. Each local connection opens its own authenticated `Session` tunnel
//! (`tunnel::client`), and bytes are copied both ways unchanged: the appliance's broker enforces
//! the grant on every request, so this side decides nothing.
//!
//! The local port listens on loopback only (anyone who reaches it acts as you). It prints a line
//! when a session opens, when the local client leaves, and when the appliance closes the session
//! (window ended, grant revoked, session killed or idle).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::Globals;
use crate::tunnel::profile::{ResolvedTunnel, TunnelArgs};
use crate::tunnel::Purpose;

/// Most local connections tunnelled at once.
const MAX_LOCAL_CONNECTIONS: usize = 16;

const AFTER_HELP: &str = "\
Point your Modbus tool at the local port; every request is checked against the grant on the
appliance, and refused ones get a Modbus exception (01 or 02). Runs until interrupted.

Example:
  otgate connect --grant G-0001 --asset line3-plc --listen 127.0.0.1:5020 --profile alice.toml
  mbpoll -m tcp -p 5020 -a 1 -r 100 127.0.0.1";

/// Arguments of `otgate connect`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct ConnectArgs {
    /// The active grant to use (`G-0001`).
    #[arg(long, value_name = "ID")]
    pub grant: String,
    /// The asset of the grant (`line3-plc`).
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
    let Some(asset) = args.asset.clone() else {
        return Err(super::hint(
            anyhow::anyhow!("no --asset given for grant {}", args.grant),
            "pass --asset with the grant's asset, as `otgate request` printed it",
        ));
    };
    let tunnel = Arc::new(args.tunnel.resolve()?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args, asset, tunnel))
}

async fn serve(
    args: ConnectArgs,
    asset: String,
    tunnel: Arc<ResolvedTunnel>,
) -> anyhow::Result<ExitCode> {
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
