//! End-to-end: vendor_support.
