//! The daemon's control API on a Unix socket inside the data directory (`control.sock`), used by
//! the local console and the CLI. Local only: the IT side never reaches it.
