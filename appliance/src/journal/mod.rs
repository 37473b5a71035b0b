//! The audit journal: append-only segment files of length-framed, checksummed, SHA-256
//! hash-chained records with ed25519-signed checkpoints. The single source of truth: every
//! decision is appended and durable before it takes effect, and only this module writes it.

pub mod event;
