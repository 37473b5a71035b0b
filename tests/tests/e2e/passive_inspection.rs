//! End-to-end: passive_inspection.
