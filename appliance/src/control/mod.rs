//! The daemon's control API on a Unix socket inside the data directory (`control.sock`, mode
//! 0600), used by the local console and the CLI. Local only: the IT side never reaches it.
//!
//! The protocol is JSON lines: the client writes one [`ControlRequest`] per line and reads one
//! [`ControlResponse`] per line, in order. A line is at most [`MAX_LINE`] bytes; a longer or
//! malformed line gets an error response and the connection is closed. The method
//! `events.follow` turns the connection into a stream of [`Notice`] lines (grant warnings, ends,
//! revocations, ...) until either side closes it; follow modes of the CLI use it.
//!
//! Each concern answers its own methods in its own file (`grants.rs` for `grants.*`, ...): the
//! dispatcher routes by the method's prefix, so adding a concern is one file and one match arm.
//! This module authenticates nobody by itself: the socket's mode limits it to the appliance's
//! user, and handlers that act for an OT person authenticate that person against the OT store.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::daemon::Appliance;

pub mod client;
pub mod grants;
pub mod inspect;
pub mod policy;
pub mod sessions;
pub mod stores;

/// The longest request or response line, in bytes.
pub const MAX_LINE: usize = 256 * 1024;

/// One request on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlRequest {
    /// What to do, `concern.verb` (e.g. `grants.list`).
    pub method: String,
    /// The method's arguments.
    #[serde(default)]
    pub params: Value,
}

/// One response on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlResponse {
    /// Whether the method succeeded.
    pub ok: bool,
    /// The method's answer when `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// What went wrong when not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ControlError>,
}

/// Why a control request failed; `code` lets the CLI choose its exit status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ControlError {
    /// `refused` (policy or lifecycle said no), `invalid` (bad input), `unauthenticated`,
    /// `not_found`, `unknown_method`, or `internal`.
    pub code: String,
    /// What was wrong, in words.
    pub message: String,
    /// The next thing to try, if there is an obvious one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl ControlError {
    /// An error with a code and a message.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            hint: None,
        }
    }

    /// Attach a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Bad input.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new("invalid", message)
    }

    /// Refused by policy or the lifecycle.
    pub fn refused(message: impl Into<String>) -> Self {
        Self::new("refused", message)
    }

    /// Something the daemon failed at.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new("internal", message)
    }
}

/// Something the daemon tells followers as it happens (one JSON line each in `events.follow`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// A snake_case kind, e.g. `grant_warning`, `grant_ended`, `grant_revoked`.
    pub kind: String,
    /// When, RFC 3339.
    pub at: chrono::DateTime<chrono::Utc>,
    /// The grant concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    /// The request concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// In words, for a console line.
    pub message: String,
}

/// Parse a method's params into its argument struct, or say which params were wrong.
pub fn params<T: serde::de::DeserializeOwned>(
    method: &str,
    params: Value,
) -> Result<T, ControlError> {
    let params = if params.is_null() {
        Value::Object(Default::default())
    } else {
        params
    };
    serde_json::from_value(params)
        .map_err(|e| ControlError::invalid(format!("bad parameters for {method}: {e}")))
}

/// Bind the control socket at `path` with mode 0600, replacing a stale socket file.
///
/// Refuses when another daemon answers on it.
pub async fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("another daemon answers on {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serve the control socket until `shutdown` fires; each connection is served on its own task.
pub async fn serve(listener: UnixListener, app: Arc<Appliance>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let app = Arc::clone(&app);
                    let shutdown = shutdown.clone();
                    tokio::spawn(async move {
                        if let Err(e) = connection(stream, app, shutdown).await {
                            tracing::debug!(error = %e, "control connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
}

async fn connection(
    stream: UnixStream,
    app: Arc<Appliance>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            read = read_line(&mut lines, &mut line) => read?,
        };
        let Some(()) = read else { return Ok(()) };
        let request: ControlRequest = match serde_json::from_slice(&line) {
            Ok(r) => r,
            Err(e) => {
                let error = ControlError::invalid(format!("malformed control request: {e}"));
                write_json(&mut write, &failure(error)).await?;
                return Ok(());
            }
        };
        if request.method == "events.follow" {
            return follow(write, app, shutdown).await;
        }
        let response = match dispatch(&app, request).await {
            Ok(result) => ControlResponse {
                ok: true,
                result: Some(result),
                error: None,
            },
            Err(error) => failure(error),
        };
        write_json(&mut write, &response).await?;
    }
}

fn failure(error: ControlError) -> ControlResponse {
    ControlResponse {
        ok: false,
        result: None,
        error: Some(error),
    }
}

/// Read one line (without its newline) of at most [`MAX_LINE`] bytes; `None` at end of stream.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> std::io::Result<Option<()>> {
    use tokio::io::AsyncReadExt;
    let mut limited = (&mut *reader).take(MAX_LINE as u64 + 1);
    let n = limited.read_until(b'\n', line).await?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() > MAX_LINE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("control request longer than {MAX_LINE} bytes"),
        ));
    }
    Ok(Some(()))
}

async fn write_json<W: tokio::io::AsyncWrite + Unpin, T: Serialize>(
    write: &mut W,
    value: &T,
) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    write.write_all(&bytes).await?;
    write.flush().await
}

/// Route a request to the concern that answers it.
async fn dispatch(app: &Arc<Appliance>, request: ControlRequest) -> Result<Value, ControlError> {
    let concern = request
        .method
        .split_once('.')
        .map_or(request.method.as_str(), |(c, _)| c);
    match concern {
        "ping" => Ok(serde_json::json!({ "pong": true })),
        "grants" => grants::handle(app, &request.method, request.params).await,
        "users" | "vault" => stores::handle(app, &request.method, request.params).await,
        "sessions" => sessions::handle(app, &request.method, request.params).await,
        "inspect" => inspect::handle(app, &request.method, request.params).await,
        "policy" => policy::handle(app, &request.method, request.params).await,
        _ => Err(ControlError::new(
            "unknown_method",
            format!("unknown method {}", request.method),
        )),
    }
}

/// Stream notices as JSON lines until the follower leaves or the daemon stops.
async fn follow(
    mut write: tokio::net::unix::OwnedWriteHalf,
    app: Arc<Appliance>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut notices = app.notices.subscribe();
    write_json(
        &mut write,
        &ControlResponse {
            ok: true,
            result: Some(Value::Null),
            error: None,
        },
    )
    .await?;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            notice = notices.recv() => match notice {
                Ok(n) => write_json(&mut write, &n).await?,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "a control follower lagged; notices were skipped");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests;
