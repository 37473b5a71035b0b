//! The CLI's side of the control socket: a small blocking client (the CLI has no runtime of its
//! own), one request and one response per call, and a follower that yields notices.
//!
//! It does not retry and does not start a daemon: when nothing answers on the socket,
//! [`ClientError::NotRunning`] says so and the CLI tells the operator to run `otgate serve`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::{ControlError, ControlRequest, ControlResponse, Notice, MAX_LINE};

/// How long a call waits for the daemon's answer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a control call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No daemon answers on the socket.
    #[error("no daemon answers on {path}: {source}")]
    NotRunning {
        /// The socket path tried.
        path: PathBuf,
        /// Why the connection failed.
        source: std::io::Error,
    },
    /// The connection broke or timed out mid-call.
    #[error("control socket {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The daemon answered something that is not a response.
    #[error("control socket {path}: malformed response: {detail}")]
    Malformed {
        /// The socket path.
        path: PathBuf,
        /// What was wrong with it.
        detail: String,
    },
    /// The daemon refused or failed the request.
    #[error(transparent)]
    Refused(#[from] ControlError),
}

/// A connection to a running daemon's control socket.
#[derive(Debug)]
pub struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connect to the socket at `path`.
    pub fn connect(path: &Path) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::NotRunning {
            path: path.to_owned(),
            source,
        })?;
        let io = |source| ClientError::Io {
            path: path.to_owned(),
            source,
        };
        stream.set_read_timeout(Some(CALL_TIMEOUT)).map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        Ok(Self {
            path: path.to_owned(),
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Call `method` with `params` and return its result.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, ClientError> {
        self.send(method, params)?;
        let response = self.response()?;
        match (response.ok, response.result, response.error) {
            (true, result, _) => Ok(result.unwrap_or(Value::Null)),
            (false, _, Some(error)) => Err(ClientError::Refused(error)),
            (false, _, None) => Err(self.malformed("a failure without an error")),
        }
    }

    /// Turn this connection into a follower of the daemon's notices.
    pub fn follow(mut self) -> Result<Follower, ClientError> {
        self.call("events.follow", Value::Null)?;
        let io = |source| ClientError::Io {
            path: self.path.clone(),
            source,
        };
        self.reader.get_ref().set_read_timeout(None).map_err(io)?;
        Ok(Follower { client: self })
    }

    fn send(&mut self, method: &str, params: Value) -> Result<(), ClientError> {
        let request = ControlRequest {
            method: method.to_owned(),
            params,
        };
        let mut bytes = serde_json::to_vec(&request).map_err(|e| self.malformed(&e.to_string()))?;
        bytes.push(b'\n');
        self.writer
            .write_all(&bytes)
            .map_err(|source| ClientError::Io {
                path: self.path.clone(),
                source,
            })
    }

    fn line(&mut self) -> Result<Option<String>, ClientError> {
        let mut line = String::new();
        let n = (&mut self.reader)
            .take(MAX_LINE as u64 + 1)
            .read_line(&mut line)
            .map_err(|source| ClientError::Io {
                path: self.path.clone(),
                source,
            })?;
        Ok((n > 0).then_some(line))
    }

    fn response(&mut self) -> Result<ControlResponse, ClientError> {
        let line = self
            .line()?
            .ok_or_else(|| self.malformed("the daemon closed the connection"))?;
        serde_json::from_str(&line).map_err(|e| self.malformed(&e.to_string()))
    }

    fn malformed(&self, detail: &str) -> ClientError {
        ClientError::Malformed {
            path: self.path.clone(),
            detail: detail.to_owned(),
        }
    }
}

use std::io::Read as _;

/// A stream of the daemon's notices.
#[derive(Debug)]
pub struct Follower {
    client: Client,
}

impl Follower {
    /// The next notice; `None` when the daemon closed the stream.
    pub fn next_notice(&mut self) -> Result<Option<Notice>, ClientError> {
        match self.client.line()? {
            None => Ok(None),
            Some(line) => serde_json::from_str(&line)
                .map(Some)
                .map_err(|e| self.client.malformed(&e.to_string())),
        }
    }
}

/// Connect, call once, disconnect.
pub fn call(path: &Path, method: &str, params: Value) -> Result<Value, ClientError> {
    Client::connect(path)?.call(method, params)
}
