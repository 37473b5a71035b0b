//! The two credential stores, kept apart: `it` (people who ask) and `ot` (approvers, operators,
//! and the OT device-secret vault). Separate files, separate keys, separate code paths.
