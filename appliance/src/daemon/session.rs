//! One broker session on an active grant: the glue between an authenticated `Session` tunnel
//! and the broker.
//!
//! The session ends when the grant's token fires (end or revocation), at the grant's monotonic
//! deadline, when the daemon stops, or when either side closes; dropping the lease tells the
//! grants service that the session left (for "end on last disconnect").

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::Appliance;
use crate::grants::SessionLease;

/// Carry `stream` for `lease` until it must end.
pub async fn run<S>(app: Arc<Appliance>, mut stream: S, lease: SessionLease)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    // Until the broker is wired in, a session holds the connection and forwards nothing.
    let mut scratch = [0u8; 1024];
    loop {
        tokio::select! {
            () = lease.cancel.cancelled() => break,
            () = app.shutdown.cancelled() => break,
            () = tokio::time::sleep_until(lease.deadline) => break,
            read = stream.read(&mut scratch) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
        }
    }
    let _ = stream.shutdown().await;
    drop(lease);
}
