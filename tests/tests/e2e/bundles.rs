//! End-to-end: bundles.
