//! A small syslog collector for tests and demos: accepts RFC 6587 octet-counted messages over
//! TCP, or over TLS (RFC 5425), and keeps them in memory with the connection they came on.
//! It can be stopped (closing every connection, as an outage would) and started again on the
//! same port. It closes a connection once the sender has closed its side and everything is read.
//!
//! Not a production collector: no disk, no limits beyond the frame size (1 MiB).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// The largest frame the collector accepts.
pub const MAX_FRAME: usize = 1 << 20;

/// One message received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The connection it came on (counting from 0 in this collector's life).
    pub connection: u64,
    /// The message, without its length prefix.
    pub message: String,
}

/// Splits a byte stream into octet-counted frames (`LEN SP MSG`).
#[derive(Debug, Default)]
pub struct OctetFramer {
    buf: Vec<u8>,
}

impl OctetFramer {
    /// Add bytes; returns the complete messages, or an error if the framing is broken.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<String>, String> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            let Some(space) = self.buf.iter().take(11).position(|b| *b == b' ') else {
                if self.buf.len() > 10 || self.buf.iter().any(|b| !b.is_ascii_digit()) {
                    return Err("no octet count at the start of a frame".into());
                }
                return Ok(out);
            };
            let digits = self.buf.get(..space).unwrap_or_default();
            let len: usize = std::str::from_utf8(digits)
                .ok()
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse().ok())
                .ok_or("the octet count is not a number")?;
            if len > MAX_FRAME {
                return Err(format!("frame of {len} bytes exceeds {MAX_FRAME}"));
            }
            let Some(message) = self.buf.get(space + 1..space + 1 + len) else {
                return Ok(out);
            };
            out.push(String::from_utf8_lossy(message).into_owned());
            self.buf.drain(..space + 1 + len);
        }
    }
}

/// A running collector.
pub struct Collector {
    addr: SocketAddr,
    messages: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    /// The accept loop; joined on stop.
    accept: Option<JoinHandle<()>>,
    /// Connection handlers; joined on stop.
    handlers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Collector {
    /// Listen for syslog over TCP at `bind` (port 0 picks one).
    pub fn start_tcp(bind: SocketAddr) -> io::Result<Collector> {
        Self::start(bind, None)
    }

    /// Listen for syslog over TLS at `bind` with this certificate chain and key.
    pub fn start_tls(
        bind: SocketAddr,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> io::Result<Collector> {
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(io::Error::other)?
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .map_err(io::Error::other)?;
        Self::start(bind, Some(Arc::new(config)))
    }

    fn start(bind: SocketAddr, tls: Option<Arc<ServerConfig>>) -> io::Result<Collector> {
        let listener = TcpListener::bind(bind)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handlers = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let (messages, stop, handlers) = (messages.clone(), stop.clone(), handlers.clone());
            std::thread::spawn(move || {
                let connections = AtomicU64::new(0);
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let id = connections.fetch_add(1, Ordering::SeqCst);
                            let (messages, stop, tls) =
                                (messages.clone(), stop.clone(), tls.clone());
                            let handler =
                                std::thread::spawn(move || serve(stream, id, tls, messages, stop));
                            if let Ok(mut handlers) = handlers.lock() {
                                handlers.push(handler);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5))
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Ok(Collector {
            addr,
            messages,
            stop,
            accept: Some(accept),
            handlers,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything received so far.
    pub fn messages(&self) -> Vec<Received> {
        self.messages.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Stop: close the listener and every connection (an outage), and wait for the threads.
    pub fn stop(mut self) -> Vec<Received> {
        self.shutdown();
        self.messages()
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let handlers = self
            .handlers
            .lock()
            .map(|mut h| std::mem::take(&mut *h))
            .unwrap_or_default();
        for handler in handlers {
            let _ = handler.join();
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn serve(
    stream: TcpStream,
    id: u64,
    tls: Option<Arc<ServerConfig>>,
    messages: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut framer = OctetFramer::default();
    let mut record = |data: &[u8]| -> bool {
        match framer.push(data) {
            Ok(frames) => {
                if let Ok(mut messages) = messages.lock() {
                    messages.extend(frames.into_iter().map(|message| Received {
                        connection: id,
                        message,
                    }));
                }
                true
            }
            Err(_) => false,
        }
    };
    let mut buf = vec![0u8; 16 * 1024];
    match tls {
        None => {
            let mut stream = stream;
            while !stop.load(Ordering::SeqCst) {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if !record(buf.get(..n).unwrap_or_default()) {
                            break;
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => break,
                }
            }
            let _ = stream.shutdown(Shutdown::Both);
        }
        Some(config) => {
            let Ok(connection) = ServerConnection::new(config) else {
                return;
            };
            let mut stream = StreamOwned::new(connection, stream);
            while !stop.load(Ordering::SeqCst) {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if !record(buf.get(..n).unwrap_or_default()) {
                            break;
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => break,
                }
            }
            stream.conn.send_close_notify();
            let _ = stream.flush();
            let _ = stream.sock.shutdown(Shutdown::Both);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_split_anywhere_are_reassembled() {
        let stream = b"5 hello11 hello world3 abc";
        for cut in 0..stream.len() {
            let mut framer = OctetFramer::default();
            let mut out = framer.push(&stream[..cut]).unwrap();
            out.extend(framer.push(&stream[cut..]).unwrap());
            assert_eq!(out, ["hello", "hello world", "abc"]);
        }
    }

    #[test]
    fn broken_framing_is_refused() {
        assert!(OctetFramer::default().push(b"<13>1 no count").is_err());
        assert!(OctetFramer::default().push(b"99999999999 x").is_err());
        assert!(OctetFramer::default().push(b"2000000 x").is_err());
    }

    proptest! {
        #[test]
        fn the_framer_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = OctetFramer::default().push(&bytes);
        }
    }
}
