//! Acceptance rules of `otgate_sync::verify`: one test per bad input, each naming the reason.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use otgate_sync::bundle::{canonical_policy, Body, Bundle, Header, SignatureEntry};
use otgate_sync::{
    verify, ActiveBundleInfo, AuthorityKey, KeyId, Refusal, TrustRoot, TrustRootFile,
};

const POLICY: &str = include_str!("../../policies/examples/plant.toml");

/// A policy as bundles carry it (canonical JSON).
fn canon(toml: &str) -> String {
    canonical_policy(toml, "test.toml").unwrap()
}

fn key(i: u8) -> AuthorityKey {
    AuthorityKey::from_secret([i; 32], Some(format!("hq-{i}")))
}

fn root_file(version: u64, threshold: usize, keys: &[u8], revoked: &[u8]) -> TrustRootFile {
    TrustRootFile {
        format: 1,
        site: "plant-a".into(),
        root_version: version,
        threshold,
        keys: keys.iter().map(|&i| key(i).public_entry()).collect(),
        revoked: revoked.iter().map(|&i| key(i).key_id()).collect(),
    }
}

fn root() -> TrustRoot {
    TrustRoot::new(root_file(1, 2, &[1, 2, 3], &[])).unwrap()
}

fn at(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, 12, 0, 0).unwrap()
}

fn now() -> DateTime<Utc> {
    at(15)
}

fn skew() -> TimeDelta {
    TimeDelta::minutes(5)
}

fn body(version: u64) -> Body {
    Body {
        header: Header {
            site: "plant-a".into(),
            version,
            issued_at: at(1),
            not_before: at(1),
            expires_at: at(30),
            previous_hash: None,
            grace_period_secs: 7 * 86_400,
        },
        policy: canon(POLICY),
        trust_root: None,
    }
}

fn signed(body: Body, signers: &[u8]) -> Vec<u8> {
    let mut bundle = Bundle::new(body).unwrap();
    for &i in signers {
        bundle.sign(&key(i)).unwrap();
    }
    bundle.encode()
}

#[test]
fn two_of_three_is_accepted_and_names_its_signers() {
    let bytes = signed(body(2), &[1, 3]);
    let verified = verify(&bytes, &root(), None, now(), skew()).unwrap();
    assert_eq!(verified.header().version, 2);
    assert_eq!(verified.signers(), &[key(1).key_id(), key(3).key_id()]);
    assert_eq!(verified.policy_text(), canon(POLICY));
    assert_eq!(verified.policy().site.id.as_str(), "plant-a");
    assert_eq!(verified.encode(), bytes);
}

#[test]
fn a_flipped_byte_anywhere_is_refused() {
    let bytes = signed(body(2), &[1, 2]);
    // Every byte of the prefix and header, a stride through the policy source and through the
    // signatures (each signature check is slow in debug builds).
    let len = bytes.len();
    let signatures = len - 146;
    let indices = (0..len).filter(|&i| i < 120 || i % 499 == 0 || (i >= signatures && i % 3 == 0));
    for index in indices {
        let mut bad = bytes.clone();
        bad[index] ^= 0x01;
        let result = verify(&bad, &root(), None, now(), skew());
        assert!(result.is_err(), "flipping byte {index} was accepted");
    }
}

#[test]
fn a_flipped_byte_in_the_policy_names_the_failing_signature() {
    let bytes = signed(body(2), &[1, 2]);
    let mut bad = bytes.clone();
    let at = bytes.windows(9).position(|w| w == b"line3-plc").unwrap();
    bad[at] ^= 0x20;
    match verify(&bad, &root(), None, now(), skew()) {
        Err(Refusal::BadSignature {
            key_id,
            valid: 0,
            required: 2,
        }) => assert_eq!(key_id, key(1).key_id()),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_signature_by_an_unknown_key_is_refused() {
    let bytes = signed(body(2), &[1, 9]);
    match verify(&bytes, &root(), None, now(), skew()) {
        Err(Refusal::UnknownKey {
            key_id,
            valid: 1,
            required: 2,
        }) => assert_eq!(key_id, key(9).key_id()),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_signature_by_a_revoked_key_is_refused() {
    let root = TrustRoot::new(root_file(2, 2, &[1, 2, 3], &[3])).unwrap();
    let bytes = signed(body(2), &[1, 3]);
    match verify(&bytes, &root, None, now(), skew()) {
        Err(Refusal::RevokedKey {
            key_id,
            valid: 1,
            required: 2,
        }) => assert_eq!(key_id, key(3).key_id()),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn too_few_signatures_are_refused() {
    let bytes = signed(body(2), &[2]);
    assert!(matches!(
        verify(&bytes, &root(), None, now(), skew()),
        Err(Refusal::NotEnoughSignatures {
            valid: 1,
            required: 2
        })
    ));
    let bytes = signed(body(2), &[]);
    assert!(matches!(
        verify(&bytes, &root(), None, now(), skew()),
        Err(Refusal::NotEnoughSignatures {
            valid: 0,
            required: 2
        })
    ));
}

#[test]
fn the_same_key_counted_twice_is_refused() {
    let mut bundle = Bundle::new(body(2)).unwrap();
    bundle.sign(&key(1)).unwrap();
    let again = bundle.signatures()[0].clone();
    bundle.push_signature_unchecked(again);
    match verify(&bundle.encode(), &root(), None, now(), skew()) {
        Err(Refusal::DuplicateSigner { key_id }) => assert_eq!(key_id, key(1).key_id()),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn another_sites_bundle_is_refused() {
    let mut b = body(2);
    b.header.site = "plant-b".into();
    let bytes = signed(b, &[1, 2]);
    match verify(&bytes, &root(), None, now(), skew()) {
        Err(Refusal::WrongSite { expected, offered }) => {
            assert_eq!(
                (expected.as_str(), offered.as_str()),
                ("plant-a", "plant-b")
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn an_older_version_is_a_rollback() {
    let active = ActiveBundleInfo {
        version: 5,
        hash: [7; 32],
    };
    let bytes = signed(body(4), &[1, 2]);
    assert!(matches!(
        verify(&bytes, &root(), Some(&active), now(), skew()),
        Err(Refusal::Rollback {
            active: 5,
            offered: 4
        })
    ));
}

#[test]
fn an_equal_version_with_different_content_is_refused_loudly() {
    let active_bytes = signed(body(5), &[1, 2]);
    let active_hash = Bundle::decode(&active_bytes).unwrap().hash();
    let active = ActiveBundleInfo {
        version: 5,
        hash: active_hash,
    };
    let mut other = body(5);
    other.policy = canon(&POLICY.replace("Line 3", "Line three"));
    assert_ne!(
        other.policy,
        canon(POLICY),
        "the change shows in the canonical form"
    );
    let bytes = signed(other, &[1, 2]);
    assert!(matches!(
        verify(&bytes, &root(), Some(&active), now(), skew()),
        Err(Refusal::SameVersionDifferentContent { version: 5, .. })
    ));
    // The same bundle again, even with another set of signatures, is a no-op.
    let again = signed(body(5), &[2, 3]);
    assert!(matches!(
        verify(&again, &root(), Some(&active), now(), skew()),
        Err(Refusal::AlreadyActive { version: 5 })
    ));
}

#[test]
fn expired_and_not_yet_valid_are_refused_outside_the_skew() {
    let bytes = signed(body(2), &[1, 2]);
    let late = at(30) + TimeDelta::minutes(6);
    assert!(matches!(
        verify(&bytes, &root(), None, late, skew()),
        Err(Refusal::Expired { .. })
    ));
    assert!(verify(
        &bytes,
        &root(),
        None,
        at(30) + TimeDelta::minutes(4),
        skew()
    )
    .is_ok());
    let early = at(1) - TimeDelta::minutes(6);
    assert!(matches!(
        verify(&bytes, &root(), None, early, skew()),
        Err(Refusal::NotYetValid { .. })
    ));
    assert!(verify(&bytes, &root(), None, at(1) - TimeDelta::minutes(4), skew()).is_ok());
}

#[test]
fn a_truncated_file_is_refused_as_truncated() {
    let bytes = signed(body(2), &[1, 2]);
    for len in [0, 3, 10, bytes.len() / 2, bytes.len() - 1] {
        assert!(
            matches!(
                verify(&bytes[..len], &root(), None, now(), skew()),
                Err(Refusal::Truncated(_))
            ),
            "prefix of {len}"
        );
    }
}

#[test]
fn an_oversized_input_is_refused_with_limit_and_size() {
    let big = vec![0u8; usize::try_from(otgate_sync::bundle::MAX_BUNDLE_BYTES).unwrap() + 1];
    match verify(&big, &root(), None, now(), skew()) {
        Err(Refusal::Oversized { limit, size }) => assert_eq!(size, limit + 1),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_valid_signature_over_an_invalid_policy_is_refused() {
    let mut b = body(2);
    b.policy = "{\"site\":".into();
    let bytes = signed(b, &[1, 2]);
    match verify(&bytes, &root(), None, now(), skew()) {
        Err(Refusal::InvalidPolicy(diagnostics)) => {
            assert!(
                diagnostics.to_string().contains("bundle:policy.json:"),
                "{diagnostics}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    // Valid JSON of the right shape, but not in canonical form.
    let mut b = body(2);
    b.policy = format!("{} ", canon(POLICY));
    let bytes = signed(b, &[1, 2]);
    match verify(&bytes, &root(), None, now(), skew()) {
        Err(Refusal::InvalidPolicy(diagnostics)) => {
            assert!(
                diagnostics.to_string().contains("not in canonical form"),
                "{diagnostics}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    // Valid TOML, invalid policy (an unknown asset in a rule): every problem is named.
    let mut b = body(2);
    b.policy = canon(&POLICY.replace("line3-plc", "line9-plc").replacen(
        "id = \"line9-plc\"",
        "id = \"line3-plc\"",
        1,
    ));
    let bytes = signed(b, &[1, 2]);
    assert!(matches!(
        verify(&bytes, &root(), None, now(), skew()),
        Err(Refusal::InvalidPolicy(_))
    ));
}

#[test]
fn a_policy_for_another_site_inside_this_sites_header_is_refused() {
    let mut b = body(2);
    b.policy = canon(&POLICY.replacen("id = \"plant-a\"", "id = \"plant-b\"", 1));
    let bytes = signed(b, &[1, 2]);
    match verify(&bytes, &root(), None, now(), skew()) {
        Err(Refusal::PolicySiteMismatch { header, policy }) => {
            assert_eq!((header.as_str(), policy.as_str()), ("plant-a", "plant-b"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn rotation(new_root: &TrustRootFile) -> Body {
    let mut b = body(2);
    b.trust_root = Some(serde_json::to_vec(new_root).unwrap());
    b
}

#[test]
fn a_rotation_signed_by_the_current_threshold_carries_the_new_root() {
    let new = root_file(2, 2, &[1, 2, 3, 4], &[3]);
    let bytes = signed(rotation(&new), &[1, 2]);
    let verified = verify(&bytes, &root(), None, now(), skew()).unwrap();
    let next = verified.new_trust_root().unwrap();
    assert!(next.is_revoked(&key(3).key_id()));
    // Afterwards key 3 no longer counts.
    let later = signed(body(3), &[1, 3]);
    assert!(matches!(
        verify(&later, next, None, now(), skew()),
        Err(Refusal::RevokedKey { .. })
    ));
    assert!(verify(&signed(body(3), &[1, 4]), next, None, now(), skew()).is_ok());
}

#[test]
fn a_rotation_below_the_threshold_is_refused() {
    let new = root_file(2, 1, &[1], &[]);
    let bytes = signed(rotation(&new), &[1]);
    assert!(matches!(
        verify(&bytes, &root(), None, now(), skew()),
        Err(Refusal::RotationBelowThreshold {
            valid: 1,
            required: 2
        })
    ));
}

#[test]
fn a_rotation_must_raise_the_version_keep_the_site_and_every_revocation() {
    let same = root_file(1, 2, &[1, 2], &[]);
    assert!(matches!(
        verify(
            &signed(rotation(&same), &[1, 2]),
            &root(),
            None,
            now(),
            skew()
        ),
        Err(Refusal::TrustRootRollback {
            current: 1,
            offered: 1
        })
    ));
    let mut other_site = root_file(2, 2, &[1, 2], &[]);
    other_site.site = "plant-b".into();
    assert!(matches!(
        verify(
            &signed(rotation(&other_site), &[1, 2]),
            &root(),
            None,
            now(),
            skew()
        ),
        Err(Refusal::TrustRootWrongSite { .. })
    ));
    let current = TrustRoot::new(root_file(2, 2, &[1, 2, 3], &[3])).unwrap();
    let unrevoke = root_file(3, 2, &[1, 2, 3], &[]);
    match verify(
        &signed(rotation(&unrevoke), &[1, 2]),
        &current,
        None,
        now(),
        skew(),
    ) {
        Err(Refusal::TrustRootDropsRevocation { key_id }) => assert_eq!(key_id, key(3).key_id()),
        other => panic!("unexpected {other:?}"),
    }
    let mut broken = rotation(&root_file(2, 2, &[1, 2], &[]));
    broken.trust_root = Some(b"{ not json".to_vec());
    assert!(matches!(
        verify(&signed(broken, &[1, 2]), &root(), None, now(), skew()),
        Err(Refusal::BadTrustRoot(_))
    ));
}

#[test]
fn a_forged_signature_entry_with_a_known_id_does_not_count() {
    let mut bundle = Bundle::new(body(2)).unwrap();
    bundle.sign(&key(1)).unwrap();
    bundle.push_signature_unchecked(SignatureEntry {
        key_id: key(2).key_id(),
        signature: [0x55; 64],
    });
    assert!(matches!(
        verify(&bundle.encode(), &root(), None, now(), skew()),
        Err(Refusal::BadSignature {
            valid: 1,
            required: 2,
            ..
        })
    ));
    let _ = KeyId([0; 8]);
}

#[test]
fn a_format_1_bundle_with_a_toml_policy_is_still_verified_and_validated() {
    let mut old = body(2);
    old.policy = POLICY.into();
    let mut bundle = Bundle::new_format_1(old).unwrap();
    bundle.sign(&key(1)).unwrap();
    bundle.sign(&key(2)).unwrap();
    let verified = verify(&bundle.encode(), &root(), None, now(), skew()).unwrap();
    assert_eq!(verified.bundle().format(), 1);
    assert_eq!(verified.policy().site.id.as_str(), "plant-a");
    // Its policy is read as TOML, with lines and columns in the diagnostics.
    let mut bad = body(2);
    bad.policy = "[site\nid = ".into();
    let mut bundle = Bundle::new_format_1(bad).unwrap();
    bundle.sign(&key(1)).unwrap();
    bundle.sign(&key(2)).unwrap();
    match verify(&bundle.encode(), &root(), None, now(), skew()) {
        Err(Refusal::InvalidPolicy(d)) => {
            assert!(d.to_string().starts_with("bundle:policy.toml:1:"), "{d}")
        }
        other => panic!("unexpected {other:?}"),
    }
    // A TOML policy in a format-2 bundle is not its canonical form.
    let mut wrong = body(2);
    wrong.policy = POLICY.into();
    assert!(matches!(
        verify(&signed(wrong, &[1, 2]), &root(), None, now(), skew()),
        Err(Refusal::InvalidPolicy(_))
    ));
}
