//! The IT-side TLS listener and client authentication (ed25519 challenge, TOTP), and the client
//! side used by `otgate connect` and `otgate request`.
