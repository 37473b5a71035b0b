//! Where export messages go: a local file (a line each, `sync_data` per batch), or a syslog
//! collector over TCP (RFC 6587 octet counting) or TLS (RFC 5425, rustls with ring; the server
//! is verified against a CA file or pinned by the SHA-256 of its certificate, with the pinned
//! verifier of `otgate_sync::net::tls`, the one bundle pulls use).
//!
//! Syslog has no acknowledgements, so delivery is confirmed from TCP itself: the socket's
//! `TCP_USER_TIMEOUT` is the ack timeout, so a connection that is still healthy one ack timeout
//! (plus a margin) after a write has had that write acknowledged by the collector's TCP stack.
//! At the end of a run the exporter closes its side and waits for the collector to close
//! (it has read everything). Only confirmed records move the cursor.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use otgate_sync::net::tls::{load_certs, pinned_client_config, CertPin, PinnedVerifier};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

/// How the TLS client trusts the collector.
#[derive(Debug, Clone)]
pub enum TlsTrust {
    /// Certificates in this PEM file are the trust anchors.
    CaFile(PathBuf),
    /// The collector's end-entity certificate must have this SHA-256 (DER).
    Pin([u8; 32]),
}

/// A destination's open connection or file.
pub(crate) enum Sink {
    File {
        file: BufWriter<File>,
    },
    Tcp {
        stream: BufWriter<TcpStream>,
    },
    Tls {
        stream: Box<BufWriter<StreamOwned<ClientConnection, TcpStream>>>,
    },
}

impl Sink {
    pub(crate) fn open_file(path: &Path) -> io::Result<Sink> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Sink::File {
            file: BufWriter::new(file),
        })
    }

    fn connect_tcp(address: &str, ack_timeout: Duration) -> io::Result<TcpStream> {
        let mut last = io::Error::new(
            io::ErrorKind::NotFound,
            format!("{address} resolves to no address"),
        );
        for addr in address.to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, ack_timeout.max(Duration::from_secs(1))) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_write_timeout(Some(ack_timeout * 2 + Duration::from_secs(1)))?;
                    socket2::SockRef::from(&stream).set_tcp_user_timeout(Some(ack_timeout))?;
                    return Ok(stream);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    pub(crate) fn connect(address: &str, ack_timeout: Duration) -> io::Result<Sink> {
        Ok(Sink::Tcp {
            stream: BufWriter::new(Self::connect_tcp(address, ack_timeout)?),
        })
    }

    pub(crate) fn connect_tls(
        address: &str,
        server_name: &str,
        config: Arc<ClientConfig>,
        ack_timeout: Duration,
    ) -> io::Result<Sink> {
        let tcp = Self::connect_tcp(address, ack_timeout)?;
        tcp.set_read_timeout(Some(ack_timeout.max(Duration::from_secs(1))))?;
        let name = ServerName::try_from(server_name.to_string()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("server name `{server_name}`: {e}"),
            )
        })?;
        let connection = ClientConnection::new(config, name).map_err(io::Error::other)?;
        let mut stream = StreamOwned::new(connection, tcp);
        // Complete the handshake now, so that a refused certificate is an error here.
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(Sink::Tls {
            stream: Box::new(BufWriter::new(stream)),
        })
    }

    /// Write one message: a line for files, an octet-counted frame for syslog.
    pub(crate) fn send(&mut self, message: &str) -> io::Result<()> {
        match self {
            Sink::File { file } => {
                file.write_all(message.as_bytes())?;
                file.write_all(b"\n")
            }
            Sink::Tcp { stream } => write!(stream, "{} {message}", message.len()),
            Sink::Tls { stream } => write!(stream, "{} {message}", message.len()),
        }
    }

    /// Push everything written so far out (files: to disk).
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::File { file } => {
                file.flush()?;
                file.get_ref().sync_data()
            }
            Sink::Tcp { stream } => stream.flush(),
            Sink::Tls { stream } => stream.flush(),
        }
    }

    /// Whether a flush means delivered (files), rather than handed to TCP.
    pub(crate) fn confirms_on_flush(&self) -> bool {
        matches!(self, Sink::File { .. })
    }

    /// An error if the collector has closed or reset the connection.
    pub(crate) fn check_alive(&mut self) -> io::Result<()> {
        let closed = || {
            io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the collector closed the connection",
            )
        };
        let mut buf = [0u8; 512];
        match self {
            Sink::File { .. } => Ok(()),
            Sink::Tcp { stream } => {
                let sock = stream.get_mut();
                sock.set_nonblocking(true)?;
                let read = sock.read(&mut buf);
                sock.set_nonblocking(false)?;
                match read {
                    Ok(0) => Err(closed()),
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Sink::Tls { stream } => {
                let tls = stream.get_mut();
                tls.sock.set_nonblocking(true)?;
                let read = tls.read(&mut buf);
                tls.sock.set_nonblocking(false)?;
                match read {
                    Ok(0) => Err(closed()),
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Close our side and wait (up to `timeout`) for the collector to close its side, which
    /// it does once it has read everything. Ok means everything sent was delivered.
    pub(crate) fn finish(&mut self, timeout: Duration) -> io::Result<()> {
        self.flush()?;
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 512];
        match self {
            Sink::File { .. } => Ok(()),
            Sink::Tcp { stream } => {
                let sock = stream.get_mut();
                sock.shutdown(Shutdown::Write)?;
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the collector did not close",
                        ));
                    }
                    sock.set_read_timeout(Some(left))?;
                    if sock.read(&mut buf)? == 0 {
                        return Ok(());
                    }
                }
            }
            Sink::Tls { stream } => {
                let tls = stream.get_mut();
                tls.conn.send_close_notify();
                tls.flush()?;
                tls.sock.shutdown(Shutdown::Write)?;
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the collector did not close",
                        ));
                    }
                    tls.sock.set_read_timeout(Some(left))?;
                    match tls.read(&mut buf) {
                        Ok(0) => return Ok(()),
                        Ok(_) => {}
                        // A collector that closes without close_notify has still read everything.
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
}

/// A rustls client configuration (ring) trusting the collector as `trust` says, and for a pin,
/// the verifier (shared with bundle pulls: `otgate_sync::net::tls`), which tells after a
/// refused handshake which certificate the collector presented.
pub fn client_config(
    trust: &TlsTrust,
) -> Result<(Arc<ClientConfig>, Option<PinnedVerifier>), String> {
    match trust {
        TlsTrust::CaFile(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in load_certs(path).map_err(|e| e.to_string())? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            let config = ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
            Ok((Arc::new(config), None))
        }
        TlsTrust::Pin(pin) => {
            let (config, verifier) =
                pinned_client_config(CertPin(*pin)).map_err(|e| e.to_string())?;
            Ok((config, Some(verifier)))
        }
    }
}

/// Name the certificate a collector presented instead of the pinned one, if that is why a
/// connection failed.
pub(crate) fn explain_pin_mismatch(
    error: io::Error,
    pin: &[u8; 32],
    verifier: Option<&PinnedVerifier>,
) -> io::Error {
    match verifier.and_then(PinnedVerifier::offered) {
        Some(offered) if offered != CertPin(*pin) => io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the collector's certificate is {offered}, not the pinned {}",
                CertPin(*pin)
            ),
        ),
        _ => error,
    }
}
