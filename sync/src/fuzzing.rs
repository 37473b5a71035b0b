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

/// Seed bundles for `corpus/bundle/`: signed by the fuzz root's key, one plain, one carrying a
/// trust root, one with an invalid policy, one unsigned, one of format 1 (TOML policy).
pub fn seeds(policy_source: &str) -> Vec<(String, Vec<u8>)> {
    use crate::bundle::{Body, Bundle, Header};
    let Some(day) = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single() else {
        return Vec::new();
    };
    let key = AuthorityKey::from_secret([1; 32], None);
    let body = |version: u64, policy: &str, root: Option<Vec<u8>>| Body {
        header: Header {
            site: "plant-a".into(),
            version,
            issued_at: day,
            not_before: day,
            expires_at: day + TimeDelta::days(30),
            previous_hash: Some([0x11; 32]),
            grace_period_secs: 86_400,
        },
        policy: policy.to_owned(),
        trust_root: root,
    };
    let root = TrustRoot::new(TrustRootFile {
        format: 1,
        site: "plant-a".into(),
        root_version: 2,
        threshold: 1,
        keys: vec![key.public_entry()],
        revoked: vec![],
    })
    .ok()
    .map(|r| r.to_json().into_bytes());
    let canonical = crate::bundle::canonical_policy(policy_source, "seed.toml").unwrap_or_default();
    let canonical = canonical.as_str();
    let cases = [
        ("plain", body(2, canonical, None), true, false),
        ("rotation", body(3, canonical, root), true, false),
        ("invalid-policy", body(4, "{\"site\":", None), true, false),
        ("unsigned", body(5, canonical, None), false, false),
        ("format-1", body(6, policy_source, None), true, true),
    ];
    let mut out = Vec::new();
    for (name, body, sign, format_1) in cases {
        let made = if format_1 {
            Bundle::new_format_1(body)
        } else {
            Bundle::new(body)
        };
        if let Ok(mut bundle) = made {
            if sign {
                let _ = bundle.sign(&key);
            }
            out.push((name.to_owned(), bundle.encode()));
        }
    }
    out
}
