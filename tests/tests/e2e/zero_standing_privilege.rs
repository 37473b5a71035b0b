//! End-to-end: zero_standing_privilege.
