//! Live capture from a network interface, receive only: an `AF_PACKET` raw socket (all
//! ethertypes) whose frames are kept only when they were received on the chosen interface
//! (frames the host itself sends, `PACKET_OUTGOING`, are ignored), and handed to the
//! [`Monitor`].
//!
//! What it does not do: transmit. Nothing here calls `send`, `sendto` or `write` on the socket,
//! and the interface is never configured (no address, no promiscuous flag: a mirror port is set
//! up by the operator, e.g. `ip link set mirror0 up promisc on`). The end-to-end test replays a
//! capture into a veth pair and checks the interface's TX counter did not move.
//!
//! Guarantees: bounded by `Limits` (frames, duration) or a stop flag checked at least every
//! 200 ms; one receive buffer of 64 KiB; needs root or `CAP_NET_RAW`.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{
    recvfrom, setsockopt, socket, sockopt, AddressFamily, LinkAddr, SockFlag, SockProtocol,
    SockType,
};
use nix::sys::time::TimeVal;

use super::capture::{Frame, LinkType};
use super::monitor::{Monitor, Sink};

/// When to stop a live capture (whichever comes first; neither means until the stop flag).
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Stop after this many frames received on the interface.
    pub frames: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
}

/// Why a live capture could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LiveError {
    /// The interface does not exist.
    #[error("no interface named {iface:?}")]
    NoSuchInterface {
        /// The name given.
        iface: String,
    },
    /// The packet socket could not be opened (not root, no `CAP_NET_RAW`).
    #[error("cannot open a packet socket: {0}")]
    Socket(nix::Error),
    /// Receiving failed.
    #[error("receiving on {iface}: {source}")]
    Receive {
        /// The interface.
        iface: String,
        /// The cause.
        source: nix::Error,
    },
}

const PACKET_OUTGOING: u8 = 4;
const ARPHRD_NONE: u16 = 0xFFFE;

/// The kernel's index of `iface`, read from sysfs.
fn ifindex(iface: &str) -> Result<usize, LiveError> {
    let missing = || LiveError::NoSuchInterface {
        iface: iface.to_string(),
    };
    if iface.is_empty() || iface.contains('/') || iface.contains("..") {
        return Err(missing());
    }
    std::fs::read_to_string(format!("/sys/class/net/{iface}/ifindex"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(missing)
}

/// An open receive-only packet socket bound by filter to one interface.
pub struct LiveCapture {
    fd: std::os::fd::OwnedFd,
    index: usize,
    iface: String,
    /// One receive buffer, reused for every frame.
    buf: Vec<u8>,
}

impl std::fmt::Debug for LiveCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCapture")
            .field("iface", &self.iface)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl LiveCapture {
    /// Open the packet socket for `iface`; frames received from now on are seen.
    pub fn open(iface: &str) -> Result<Self, LiveError> {
        let index = ifindex(iface)?;
        let fd = socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::EthAll,
        )
        .map_err(LiveError::Socket)?;
        setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(0, 200_000))
            .map_err(LiveError::Socket)?;
        // A larger receive buffer rides out bursts; failing to get it is not fatal.
        let _ = setsockopt(&fd, sockopt::RcvBuf, &(8 << 20));
        Ok(Self {
            fd,
            index,
            iface: iface.to_string(),
            buf: vec![0u8; 65_536],
        })
    }

    /// The interface's name.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The next frame received on the interface, waiting at most 200 ms (`None` then).
    pub fn next_frame(&mut self) -> Result<Option<(LinkType, &[u8])>, LiveError> {
        let (len, addr) = match recvfrom::<LinkAddr>(self.fd.as_raw_fd(), &mut self.buf) {
            Ok(v) => v,
            Err(nix::Error::EAGAIN | nix::Error::EINTR) => return Ok(None),
            Err(source) => {
                return Err(LiveError::Receive {
                    iface: self.iface.clone(),
                    source,
                })
            }
        };
        let Some(addr) = addr else { return Ok(None) };
        if addr.ifindex() != self.index || addr.pkttype() == PACKET_OUTGOING {
            return Ok(None);
        }
        let link = if addr.hatype() == ARPHRD_NONE {
            LinkType::RawIp
        } else {
            LinkType::Ethernet
        };
        Ok(self.buf.get(..len).map(|data| (link, data)))
    }
}

/// Capture on `iface` until `limits` are reached; returns the frames inspected.
pub fn capture(
    iface: &str,
    limits: Limits,
    monitor: &mut Monitor,
    sink: &mut dyn Sink,
) -> Result<u64, LiveError> {
    capture_until(
        iface,
        limits,
        &AtomicBool::new(false),
        monitor,
        sink,
        &mut || {},
    )
}

/// Capture on `iface` until `limits` are reached or `stop` is set. `ready` is called once the
/// socket is open (frames received from then on are seen).
pub fn capture_until(
    iface: &str,
    limits: Limits,
    stop: &AtomicBool,
    monitor: &mut Monitor,
    sink: &mut dyn Sink,
    ready: &mut dyn FnMut(),
) -> Result<u64, LiveError> {
    let mut live = LiveCapture::open(iface)?;
    ready();
    let started = Instant::now();
    let mut frames = 0u64;
    loop {
        if stop.load(Ordering::Relaxed)
            || limits.frames.is_some_and(|n| frames >= n)
            || limits.duration.is_some_and(|d| started.elapsed() >= d)
        {
            return Ok(frames);
        }
        let Some((link, data)) = live.next_frame()? else {
            continue;
        };
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        frames += 1;
        monitor.process(&Frame { ts, link, data }, sink);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_interfaces_are_refused_by_name() {
        for name in ["no-such-if0", "", "../etc", "a/b"] {
            assert!(
                matches!(ifindex(name), Err(LiveError::NoSuchInterface { .. })),
                "{name}"
            );
        }
        assert!(ifindex("lo").is_ok());
    }
}
