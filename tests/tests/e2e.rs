//! otgate end-to-end tests: one test binary, one module per situation or concern.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

mod e2e {
    mod bundles;
    mod demo;
    mod emergency_review;
    mod journal_crash;
    mod maintenance_window;
    mod modbus_interop;
    mod passive_inspection;
    mod vendor_support;
    mod zero_standing_privilege;
}
