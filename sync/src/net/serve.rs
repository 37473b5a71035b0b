//! HQ's read-only bundle server: HTTPS over rustls, `GET /sites/<site>/latest` answers with the
//! newest bundle (highest version) for that site among the `*.otgb` files of one directory.
//!
//! It never writes, never verifies (the appliance does), and never serves anything but a bundle
//! file's bytes. Connections are capped ([`MAX_CONNECTIONS`]); the TLS handshake and the request
//! head each have a deadline ([`CLIENT_TIMEOUT`]); the head is at most `MAX_HEAD_BYTES`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::http;
use crate::bundle::{Bundle, MAX_BUNDLE_BYTES};

/// At most this many connections are served at once; more wait in the accept queue.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client may take for its TLS handshake, and again for its request head.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Accepting connections failed.
    #[error("accepting connections: {0}")]
    Accept(std::io::Error),
}

/// Serve `dir` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    dir: PathBuf,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let acceptor = TlsAcceptor::from(tls);
    // Caps concurrent connections; each handler holds one permit for its lifetime.
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let dir = Arc::new(dir);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return Ok(()),
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => accepted.map_err(ServeError::Accept)?,
        };
        let acceptor = acceptor.clone();
        let dir = dir.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(reason) = handle(stream, acceptor, &dir).await {
                tracing::debug!(%peer, %reason, "bundle request not served");
            }
        });
    }
}

async fn handle(
    stream: tokio::net::TcpStream,
    acceptor: TlsAcceptor,
    dir: &Path,
) -> Result<(), String> {
    let mut tls = tokio::time::timeout(CLIENT_TIMEOUT, acceptor.accept(stream))
        .await
        .map_err(|_| "TLS handshake timed out".to_owned())?
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let head = tokio::time::timeout(CLIENT_TIMEOUT, read_head(&mut tls))
        .await
        .map_err(|_| "request head timed out".to_owned())??;
    let (status, body) = match http::parse_request_line(&head) {
        None => (400, Vec::new()),
        Some(line) if line.method != "GET" => (405, Vec::new()),
        Some(line) => match site_of(line.path) {
            None => (404, Vec::new()),
            Some(site) => {
                let dir = dir.to_path_buf();
                let site = site.to_owned();
                match tokio::task::spawn_blocking(move || newest_bundle(&dir, &site)).await {
                    Ok(Some(bytes)) => (200, bytes),
                    Ok(None) => (404, Vec::new()),
                    Err(_) => (500, Vec::new()),
                }
            }
        },
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    };
    let response_head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/vnd.otgate.bundle\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let write = async {
        tls.write_all(response_head.as_bytes()).await?;
        tls.write_all(&body).await?;
        tls.shutdown().await
    };
    tokio::time::timeout(CLIENT_TIMEOUT * 6, write)
        .await
        .map_err(|_| "response write timed out".to_owned())?
        .map_err(|e| format!("writing response: {e}"))
}

async fn read_head<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading request: {e}"))?;
        if n == 0 {
            return Err("connection closed before the request head ended".into());
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if let Some(end) = http::head_end(&buf) {
            buf.truncate(end);
            return Ok(buf);
        }
        if buf.len() > http::MAX_HEAD_BYTES {
            return Err(format!("request head over {} bytes", http::MAX_HEAD_BYTES));
        }
    }
}

fn site_of(path: &str) -> Option<&str> {
    let site = path.strip_prefix("/sites/")?.strip_suffix("/latest")?;
    let ok = !site.is_empty()
        && site.len() <= crate::bundle::MAX_SITE_BYTES
        && site
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then_some(site)
}

/// The bytes of the newest bundle for `site` among the `*.otgb` files directly in `dir`.
/// Files that are too large or do not decode are skipped (and traced).
pub fn newest_bundle(dir: &Path, site: &str) -> Option<Vec<u8>> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut best: Option<(u64, Vec<u8>)> = None;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("otgb") {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() || meta.len() > MAX_BUNDLE_BYTES {
            tracing::warn!(path = %path.display(), size = meta.len(), "skipping: not a file or over the bundle size limit");
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        match Bundle::decode(&bytes) {
            Ok(bundle) if bundle.header().site == site => {
                let version = bundle.header().version;
                if best.as_ref().is_none_or(|(v, _)| version > *v) {
                    best = Some((version, bytes));
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(path = %path.display(), %error, "skipping: not a bundle"),
        }
    }
    best.map(|(_, bytes)| bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_site_paths_are_served() {
        assert_eq!(site_of("/sites/plant-a/latest"), Some("plant-a"));
        assert_eq!(site_of("/sites/../latest"), Some(".."));
        assert_eq!(site_of("/sites/a/b/latest"), None);
        assert_eq!(site_of("/etc/passwd"), None);
    }
}
