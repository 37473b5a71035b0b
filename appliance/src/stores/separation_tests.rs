//! Store separation, proved on real files: with only the IT store's files and key, nothing of the
//! OT store can be read, and no IT credential authenticates on the OT side.

use std::fs;
use std::path::Path;

use chrono::Utc;

use super::it::ItStore;
use super::ot::OtStore;
use super::sealed::{self, StoreKey};
use super::totp::{base32_decode, TotpEnrolment};
use super::{AuthError, Secret, StoreError, Zone};

/// OT names and values that must never appear anywhere on the IT side.
const OT_MARKERS: &[&str] = &[
    "sam",
    "shift-supervisor",
    "olga",
    "safety-engineer",
    "hmi-line1-vnc",
    "Vnc-Pa55word!",
    "plc-line3-eng",
    "Eng-Pa55word!",
    "sam password 1",
];

fn all_files(dir: &Path) -> Vec<std::path::PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect()
}

#[test]
fn it_files_and_key_reveal_nothing_of_the_ot_store() {
    let data = tempfile::tempdir().unwrap();
    let (it_dir, ot_dir) = (data.path().join("it"), data.path().join("ot"));
    let now = Utc::now();
    let it = ItStore::create(&it_dir).unwrap();
    let ot = OtStore::create(&ot_dir).unwrap();
    it.enroll_totp("alice", now).unwrap();
    it.set_password("vendor-acme", &Secret::from("vendor password"))
        .unwrap();
    ot.add_user(
        "sam",
        &["shift-supervisor".into()],
        Some(&Secret::from("sam password 1")),
        now,
    )
    .unwrap();
    ot.add_user("olga", &["safety-engineer".into()], None, now)
        .unwrap();
    ot.enroll_totp("olga", now).unwrap();
    ot.vault()
        .set("hmi-line1-vnc", Secret::from("Vnc-Pa55word!"), now)
        .unwrap();
    ot.vault()
        .set("plc-line3-eng", Secret::from("Eng-Pa55word!"), now)
        .unwrap();

    // An attacker holding only the IT side: a copy of `it/` (files and key) and the OT files'
    // ciphertext, but not the OT key.
    let attacker = tempfile::tempdir().unwrap();
    let stolen_it = attacker.path().join("it");
    fs::create_dir(&stolen_it).unwrap();
    for file in all_files(&it_dir) {
        fs::copy(&file, stolen_it.join(file.file_name().unwrap())).unwrap();
    }
    assert!(
        ItStore::open(&stolen_it).is_ok(),
        "the IT copy is a working IT store"
    );

    // 1. No OT name or secret appears in any IT file, in any encoding we might have used.
    for file in all_files(&stolen_it) {
        let bytes = fs::read(&file).unwrap();
        for marker in OT_MARKERS {
            for needle in [marker.as_bytes().to_vec(), hex::encode(marker).into_bytes()] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{} holds `{marker}`",
                    file.display()
                );
            }
        }
    }

    // 2. The IT key is refused as an OT key, and even forced, it decrypts no OT file.
    let it_key_path = ItStore::key_path(&stolen_it);
    assert!(matches!(
        StoreKey::load(Zone::Ot, &it_key_path),
        Err(StoreError::BadKeyFile { .. })
    ));
    let it_key = StoreKey::load(Zone::It, &it_key_path).unwrap();
    for file in all_files(&ot_dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "sealed"))
    {
        let bytes = fs::read(&file).unwrap();
        for label in ["ot-store", "ot-vault", "it-store"] {
            assert!(
                matches!(
                    sealed::open(&it_key, label, &bytes, &file),
                    Err(StoreError::Tampered { .. })
                ),
                "{} opened with the IT key as {label}",
                file.display()
            );
        }
        for marker in OT_MARKERS {
            assert!(
                !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
                "OT ciphertext leaks `{marker}`"
            );
        }
    }

    // 3. An OT store directory with the IT key planted in it does not open.
    let planted = attacker.path().join("ot");
    fs::create_dir(&planted).unwrap();
    for file in all_files(&ot_dir) {
        fs::copy(&file, planted.join(file.file_name().unwrap())).unwrap();
    }
    let it_key_text = fs::read_to_string(&it_key_path).unwrap();
    fs::write(
        OtStore::key_path(&planted),
        it_key_text.replace("otgate it store", "otgate ot store"),
    )
    .unwrap();
    let err = OtStore::open(&planted).unwrap_err();
    assert!(matches!(err, StoreError::Tampered { .. }), "{err}");
    assert!(
        err.to_string().contains("store.sealed"),
        "the error names the file: {err}"
    );
}

#[test]
fn an_it_identity_with_its_own_totp_cannot_approve() {
    let data = tempfile::tempdir().unwrap();
    let now = Utc::now();
    let it = ItStore::create(&data.path().join("it")).unwrap();
    let ot = OtStore::create(&data.path().join("ot")).unwrap();
    ot.add_user(
        "sam",
        &["shift-supervisor".into()],
        Some(&Secret::from("sam password 1")),
        now,
    )
    .unwrap();
    let shown = it.enroll_totp("alice", now).unwrap();
    it.set_password("alice", &Secret::from("alice password"))
        .unwrap();
    let seed = base32_decode(shown.secret_base32.expose_str().unwrap()).unwrap();
    let code = TotpEnrolment::from_seed(Secret::new(seed), now).code_at(now);

    // alice's valid IT credentials mean nothing to the OT store.
    let err = ot
        .authenticate("alice", Some("alice password"), Some(&code), now)
        .unwrap_err();
    assert!(
        matches!(err, AuthError::UnknownIdentity { zone: Zone::Ot, .. }),
        "{err}"
    );
    // ...and an OT account of the same name would still need its own OT credentials.
    ot.add_user(
        "alice",
        &["operator".into()],
        Some(&Secret::from("ot-side password")),
        now,
    )
    .unwrap();
    let err = ot
        .authenticate("alice", Some("alice password"), None, now)
        .unwrap_err();
    assert_eq!(err.reason_code(), "wrong_password");
    // The IT code was never consumed by the OT attempts: it still works once on the IT side.
    it.verify_totp("alice", &code, now).unwrap();
}
