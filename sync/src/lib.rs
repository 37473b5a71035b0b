//! `otgate-sync`: signed policy bundles between HQ and the plant.
//!
//! HQ's authorities sign a bundle (a versioned header plus the policy source, signed as exact
//! bytes) one at a time, offline; the appliance accepts it only with a threshold of valid
//! signatures from its trust root, for its site, newer than what it runs, inside its validity.
//! Bundles carry no secrets. This crate holds the format, signing, verification, trust-root
//! rotation and the HTTPS pull/serve; the appliance decides when to activate.
