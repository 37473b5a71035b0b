//! The appliance's side of the transport: fetch the newest bundle for its site from HQ over
//! HTTPS, trusting only HQ's pinned certificate.
//!
//! The whole exchange (connect, handshake, request, response) has one deadline, so a server that
//! stalls at any point costs at most that long. The response is bounded: a declared length over
//! the bundle limit is refused before the body is read. The bytes returned are unverified;
//! `verify` decides.

use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::http;
use super::tls::{pinned_client_config, CertPin, TlsError};
use crate::bundle::MAX_BUNDLE_BYTES;

/// Why a pull failed. Nothing was changed on the appliance.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PullError {
    /// The URL is not `https://host[:port][/path]`.
    #[error("URL {url:?} is not https://host[:port][/path]")]
    BadUrl {
        /// The URL given.
        url: String,
    },
    /// The host name did not resolve, or the TCP connection failed.
    #[error("connecting to {address}: {source}")]
    Connect {
        /// host:port.
        address: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The server presented a certificate other than the pinned one.
    #[error("{address} presented certificate {offered}, but {expected} is pinned")]
    WrongCertificate {
        /// host:port.
        address: String,
        /// The pinned certificate.
        expected: CertPin,
        /// The certificate presented.
        offered: CertPin,
    },
    /// The TLS handshake failed for another reason.
    #[error("TLS with {address}: {reason}")]
    Tls {
        /// host:port.
        address: String,
        /// What rustls said.
        reason: String,
    },
    /// TLS configuration failed.
    #[error(transparent)]
    Config(#[from] TlsError),
    /// The server did not finish within the deadline.
    #[error("{address} did not answer within {after:?}")]
    TimedOut {
        /// host:port.
        address: String,
        /// The deadline.
        after: Duration,
    },
    /// Reading or writing the connection failed.
    #[error("talking to {address}: {source}")]
    Io {
        /// host:port.
        address: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The server answered with something other than a bundle.
    #[error("{address} answered HTTP {status} for {path}")]
    Status {
        /// host:port.
        address: String,
        /// The path asked for.
        path: String,
        /// The status code.
        status: u16,
    },
    /// The answer is not the HTTP subset this client speaks.
    #[error("{address} sent a malformed response: {reason}")]
    Malformed {
        /// host:port.
        address: String,
        /// What was wrong.
        reason: String,
    },
    /// The declared or received body is larger than a bundle may be.
    #[error("{address} offered {size} bytes, over the bundle limit of {limit}")]
    Oversized {
        /// host:port.
        address: String,
        /// The limit.
        limit: u64,
        /// The declared size.
        size: u64,
    },
}

/// A parsed `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsUrl {
    /// The host (name or IP address, without brackets).
    pub host: String,
    /// The port (443 when not given).
    pub port: u16,
    /// The path, `/` when not given.
    pub path: String,
}

impl HttpsUrl {
    /// Parse `https://host[:port][/path]` (IPv6 hosts in brackets).
    pub fn parse(url: &str) -> Result<Self, PullError> {
        let bad = || PullError::BadUrl {
            url: url.chars().take(200).collect(),
        };
        let rest = url.strip_prefix("https://").ok_or_else(bad)?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if after.is_empty() => 443,
                None => return Err(bad()),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, p)) => (host, p.parse().map_err(|_| bad())?),
                None => (authority, 443),
            }
        };
        if host.is_empty() || authority.contains('@') || path.contains(char::is_whitespace) {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Fetch the newest bundle for `site` from `url`. A URL without a path (or `/`) gets
/// `/sites/<site>/latest`; a URL with a path is fetched as given.
pub async fn pull(
    url: &str,
    site: &str,
    pin: CertPin,
    deadline: Duration,
) -> Result<Vec<u8>, PullError> {
    let mut parsed = HttpsUrl::parse(url)?;
    if parsed.path == "/" {
        parsed.path = http::latest_path(site);
    }
    let address = parsed.address();
    match tokio::time::timeout(deadline, fetch(&parsed, &address, pin)).await {
        Ok(result) => result,
        Err(_) => Err(PullError::TimedOut {
            address,
            after: deadline,
        }),
    }
}

async fn fetch(url: &HttpsUrl, address: &str, pin: CertPin) -> Result<Vec<u8>, PullError> {
    let (config, verifier) = pinned_client_config(pin)?;
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|source| PullError::Connect {
            address: address.to_owned(),
            source,
        })?;
    let name = ServerName::try_from(url.host.clone()).map_err(|_| PullError::BadUrl {
        url: format!("https://{address}{}", url.path),
    })?;
    let mut tls = match TlsConnector::from(config).connect(name, tcp).await {
        Ok(tls) => tls,
        Err(error) => {
            return Err(match verifier.offered() {
                Some(offered) if offered != pin => PullError::WrongCertificate {
                    address: address.to_owned(),
                    expected: pin,
                    offered,
                },
                _ => PullError::Tls {
                    address: address.to_owned(),
                    reason: error.to_string(),
                },
            })
        }
    };
    let io = |source| PullError::Io {
        address: address.to_owned(),
        source,
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: application/vnd.otgate.bundle\r\nConnection: close\r\n\r\n",
        url.path, url.host
    );
    tls.write_all(request.as_bytes()).await.map_err(io)?;
    let malformed = |reason: &str| PullError::Malformed {
        address: address.to_owned(),
        reason: reason.to_owned(),
    };

    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    let head_len = loop {
        let n = read_some(&mut tls, &mut chunk).await.map_err(io)?;
        if n == 0 {
            return Err(malformed(
                "connection closed before the response head ended",
            ));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if let Some(end) = http::head_end(&buf) {
            break end;
        }
        if buf.len() > http::MAX_HEAD_BYTES {
            return Err(malformed("response head too long"));
        }
    };
    let head = http::parse_response_head(buf.get(..head_len).unwrap_or_default())
        .ok_or_else(|| malformed("not an HTTP/1.1 response"))?;
    if head.status != 200 {
        return Err(PullError::Status {
            address: address.to_owned(),
            path: url.path.clone(),
            status: head.status,
        });
    }
    let length = head
        .content_length
        .ok_or_else(|| malformed("no Content-Length"))?;
    if length > MAX_BUNDLE_BYTES {
        return Err(PullError::Oversized {
            address: address.to_owned(),
            limit: MAX_BUNDLE_BYTES,
            size: length,
        });
    }
    let length = usize::try_from(length).map_err(|_| malformed("Content-Length out of range"))?;
    let mut body = buf.split_off(head_len);
    while body.len() < length {
        let n = read_some(&mut tls, &mut chunk).await.map_err(io)?;
        if n == 0 {
            return Err(malformed(&format!(
                "body ended after {} of {length} bytes",
                body.len()
            )));
        }
        body.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    if body.len() > length {
        return Err(malformed(&format!(
            "{} bytes after the declared body",
            body.len() - length
        )));
    }
    Ok(body)
}

/// Read once; a peer that closes without TLS close_notify after the full body counts as EOF.
async fn read_some<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    chunk: &mut [u8],
) -> std::io::Result<usize> {
    match stream.read(chunk).await {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let u = HttpsUrl::parse("https://hq.example:8443").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("hq.example", 8443, "/")
        );
        let u = HttpsUrl::parse("https://[::1]:9/x/y").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 9, "/x/y")
        );
        assert_eq!(HttpsUrl::parse("https://hq").unwrap().port, 443);
        for bad in [
            "http://hq",
            "https://",
            "https://hq:port",
            "https://u@hq",
            "hq:443",
        ] {
            assert!(HttpsUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
