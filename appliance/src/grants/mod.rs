//! Access requests, approvals and time-windowed grants: their lifecycle (`GrantState`), the one
//! `transition` function that journals every move, and the expiry task.
