//! Entry points for `cargo fuzz` (`sync/fuzz/`): one call per target, no panics allowed.

use chrono::{TimeDelta, TimeZone, Utc};

use crate::key::AuthorityKey;
use crate::trust::{TrustRoot, TrustRootFile};

/// Decode arbitrary bytes as a bundle and, if that works, re-encode and verify them against a
/// fixed root; neither may panic, and a decoded bundle must re-encode to the same bytes.
pub fn bundle(data: &[u8]) {
    if let Ok(bundle) = crate::bundle::Bundle::decode(data) {
        assert_eq!(
            bundle.encode(),
            data,
            "decode then encode must return the input"
        );
    }
    let file = TrustRootFile {
        format: 1,
        site: "plant-a".into(),
        root_version: 1,
        threshold: 1,
        keys: vec![AuthorityKey::from_secret([1; 32], None).public_entry()],
        revoked: vec![],
    };
    if let (Ok(root), chrono::LocalResult::Single(now)) = (
        TrustRoot::new(file),
        Utc.with_ymd_and_hms(2026, 11, 15, 0, 0, 0),
    ) {
        let _ = crate::verify::verify(data, &root, None, now, TimeDelta::minutes(5));
    }
}
