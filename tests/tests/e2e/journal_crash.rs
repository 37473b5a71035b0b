//! End-to-end: journal_crash.
