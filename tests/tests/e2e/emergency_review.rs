//! End-to-end: the brief's third situation as far as the grants lifecycle goes. An operator at
//! the appliance uses break-glass (`otgate request --break-glass`, through the local control
//! socket): the emergency grant on the safety controller is active at once, sits in the review
//! queue until an OT supervisor signs it off, and ends on time.

use std::time::Duration;

use otgate_tests::appliance::{describe, TestAppliance, PLANT_POLICY};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn break_glass_is_granted_at_once_and_waits_for_sign_off() {
    let mut appliance = TestAppliance::init(PLANT_POLICY);
    appliance.start(None);
    // An IT person cannot break the glass: only OT operators are at the appliance.
    let out = appliance.otgate(&[
        "request",
        "--break-glass",
        "--as",
        "alice",
        "--totp",
        "123456",
        "--target",
        "safety-plc",
        "--op",
        "read",
        "--duration",
        "10s",
        "--reason",
        "fire",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));

    let oscar = appliance.totp("oscar");
    let out = appliance.otgate(&[
        "request",
        "--break-glass",
        "--as",
        "oscar",
        "--totp",
        &oscar,
        "--target",
        "safety-plc",
        "--op",
        "read",
        "--op",
        "write",
        "--duration",
        "10s",
        "--reason",
        "burner trip",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        stdout(&out).contains("R-0001 (G-0001): active"),
        "{}",
        describe(&out)
    );
    assert!(
        stdout(&out).contains("queued for review"),
        "{}",
        describe(&out)
    );

    let out = appliance.otgate(&["review", "--json"]);
    let queue: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(queue.as_array().unwrap().len(), 1, "{}", describe(&out));

    // Its own user cannot sign it off (here refused already at the console: within the same
    // TOTP step oscar's code is spent; the unit tests cover the requester rule itself).
    let oscar_again = appliance.totp("oscar");
    let out = appliance.otgate(&[
        "review",
        "--sign-off",
        "G-0001",
        "--as",
        "oscar",
        "--totp",
        &oscar_again,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));

    let sue = appliance.totp("sue");
    let out = appliance.otgate(&[
        "review",
        "--sign-off",
        "G-0001",
        "--as",
        "sue",
        "--totp",
        &sue,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let out = appliance.otgate(&["review"]);
    assert!(stdout(&out).contains("(none)"), "{}", describe(&out));

    appliance.wait_for_state("G-0001", "ended", Duration::from_secs(60));
    let record = appliance.record("G-0001").unwrap();
    assert_eq!(record["review"]["signed_off_by"], "sue");
    assert_eq!(record["mode"], "emergency");
}

/// HQ's authority keys for the sample plant (two of two must sign a review).
fn hq_keys(appliance: &TestAppliance) -> (std::path::PathBuf, std::path::PathBuf) {
    use otgate_sync::{AuthorityKey, TrustRoot, TrustRootFile};
    let dir = appliance.scratch();
    let paths = (dir.join("officer.key"), dir.join("ciso.key"));
    let keys = [
        AuthorityKey::from_secret([7; 32], Some("officer".into())),
        AuthorityKey::from_secret([8; 32], Some("ciso".into())),
    ];
    keys[0].save_new(&paths.0).unwrap();
    keys[1].save_new(&paths.1).unwrap();
    let root = TrustRoot::new(TrustRootFile {
        format: 1,
        site: "plant-a".into(),
        root_version: 1,
        threshold: 2,
        keys: keys.iter().map(AuthorityKey::public_entry).collect(),
        revoked: vec![],
    })
    .unwrap();
    let root_file = dir.join("root.json");
    std::fs::write(&root_file, root.to_json()).unwrap();
    otgate::bundles::install_trust_root(
        &otgate::datadir::DataDir::new(&appliance.data_dir),
        &root_file,
    )
    .unwrap();
    paths
}

fn break_glass(appliance: &TestAppliance, spent: Option<&str>) -> (std::process::Output, String) {
    // A TOTP code is accepted once: wait (at most one 30 s step) for oscar's next one.
    let mut oscar = appliance.totp("oscar");
    for _ in 0..70 {
        if Some(oscar.as_str()) != spent {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        oscar = appliance.totp("oscar");
    }
    let out = appliance.otgate(&[
        "request",
        "--break-glass",
        "--as",
        "oscar",
        "--totp",
        &oscar,
        "--target",
        "safety-plc",
        "--op",
        "read",
        "--duration",
        "30m",
        "--reason",
        "burner trip",
    ]);
    (out, oscar)
}

/// `otgate authority review FILE --key KEY [create args]`.
fn sign_review(appliance: &TestAppliance, file: &str, key: &std::path::Path, create: &[&str]) {
    let path = appliance.scratch().join(file);
    let mut args = vec![
        "authority".to_owned(),
        "review".to_owned(),
        path.display().to_string(),
        "--key".to_owned(),
        key.display().to_string(),
    ];
    args.extend(create.iter().map(|a| (*a).to_owned()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = appliance.otgate(&refs);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

fn import(appliance: &TestAppliance, file: &str) -> std::process::Output {
    let path = appliance.scratch().join(file);
    appliance.otgate(&["review", "import", &path.display().to_string()])
}

#[test]
fn hq_signs_off_emergency_use_with_a_signed_review_record() {
    let mut appliance = TestAppliance::init(PLANT_POLICY);
    let (officer, ciso) = hq_keys(&appliance);
    appliance.start(None);
    let (out, spent) = break_glass(&appliance, None);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    fn hq<'a>(grants: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "--site",
            "plant-a",
            "--reviewer",
            "security-officer@hq",
            "--verdict",
            "justified",
            "--comment",
            "INC-77: burner trip, use justified",
        ];
        for g in grants {
            args.extend(["--grant", *g]);
        }
        args
    }

    // One signature of the two the trust root requires: refused, nothing changes.
    sign_review(&appliance, "one.otgr", &officer, &hq(&["G-0001"]));
    let out = import(&appliance, "one.otgr");
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr(&out).contains("1 valid signatures, 2 required"),
        "{}",
        describe(&out)
    );
    assert!(stderr(&out).contains("hint:"), "{}", describe(&out));

    // Another site's record, and a record naming a grant this appliance does not have.
    sign_review(&appliance, "site.otgr", &officer, &{
        let mut a = hq(&["G-0001"]);
        a[1] = "plant-b";
        a
    });
    sign_review(&appliance, "site.otgr", &ciso, &[]);
    let out = import(&appliance, "site.otgr");
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stderr(&out).contains("\"plant-b\""), "{}", describe(&out));
    sign_review(
        &appliance,
        "unknown.otgr",
        &officer,
        &hq(&["G-0001", "G-0042"]),
    );
    sign_review(&appliance, "unknown.otgr", &ciso, &[]);
    let out = import(&appliance, "unknown.otgr");
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr(&out).contains("G-0042 is not a grant"),
        "{}",
        describe(&out)
    );
    let queue = appliance.otgate(&["review", "--json"]);
    let queue: serde_json::Value = serde_json::from_slice(&queue.stdout).unwrap();
    assert_eq!(queue.as_array().unwrap().len(), 1);

    // Countersigned: imported through the daemon, G-0001 leaves the queue.
    sign_review(&appliance, "one.otgr", &ciso, &[]);
    let out = import(&appliance, "one.otgr");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        stdout(&out).contains("G-0001 signed off"),
        "{}",
        describe(&out)
    );
    let record = appliance.record("G-0001").unwrap();
    assert_eq!(record["review"]["signed_off_by"], "hq:security-officer@hq");
    assert_eq!(record["review"]["verdict"], "justified");
    // A replay of the same record is refused.
    let out = import(&appliance, "one.otgr");
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stderr(&out).contains("a replay"), "{}", describe(&out));

    // With the daemon down, the import works on the journal directly.
    let (out, _) = break_glass(&appliance, Some(&spent));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    appliance.stop();
    sign_review(&appliance, "two.otgr", &officer, &hq(&["G-0002"]));
    sign_review(&appliance, "two.otgr", &ciso, &[]);
    let out = import(&appliance, "two.otgr");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let out = import(&appliance, "two.otgr");
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    appliance.start(None);
    let out = appliance.otgate(&["review"]);
    assert!(stdout(&out).contains("(none)"), "{}", describe(&out));

    let journal = appliance.journal();
    let imported = journal
        .iter()
        .filter(|(k, _)| k == "review_imported")
        .count();
    assert_eq!(imported, 2);
    let refused: Vec<&serde_json::Value> = journal
        .iter()
        .filter(|(k, e)| k == "refused" && e["action"] == "review_import")
        .map(|(_, e)| e)
        .collect();
    assert_eq!(refused.len(), 5, "{refused:#?}");
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
