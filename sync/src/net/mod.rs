//! Moving bundles over the network: HQ serves (read only, HTTPS over rustls) and the appliance
//! pulls, pinning HQ's certificate. HQ never connects into the plant.
//!
//! The HTTP spoken here is the smallest useful subset of HTTP/1.1, written out on purpose: one
//! `GET /sites/<site>/latest` per connection, `Content-Length` bodies, `Connection: close`. Every
//! read is bounded in size and in time. Nothing here verifies a bundle: the server hands out
//! bytes, the puller returns bytes, and `verify` decides.

pub mod http;
pub mod pull;
pub mod serve;
pub mod tls;

pub use pull::{pull, PullError};
pub use serve::{serve, ServeError};
pub use tls::{CertPin, TlsError};
