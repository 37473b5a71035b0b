//! `otgate-sync`: signed policy bundles between HQ and the plant.
//!
//! HQ's authorities sign a bundle (a versioned header plus the policy source, signed as exact
//! bytes) one at a time, offline; the appliance accepts it only with a threshold of valid
//! signatures from its trust root, for its site, newer than what it runs, inside its validity.
//! Bundles carry no secrets. This crate holds the format ([`bundle`]), authority keys ([`key`]),
//! the trust root ([`trust`]), verification ([`verify()`], the only maker of a
//! [`VerifiedBundle`]) and the HTTPS serve and pinned pull ([`net`]); the appliance decides when
//! to activate. No clock is read here: every instant is passed in.

pub mod bundle;
pub mod key;
pub mod net;
pub mod review;
pub mod trust;
pub mod verify;

#[doc(hidden)]
pub mod fuzzing;

pub use bundle::{Body, Bundle, DecodeError, Header};
pub use key::{AuthorityKey, KeyId, PublicKeyEntry};
pub use trust::{TrustRoot, TrustRootFile};
pub use verify::{verify, ActiveBundleInfo, Refusal, VerifiedBundle};
