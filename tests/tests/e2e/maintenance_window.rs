//! End-to-end: maintenance_window.
