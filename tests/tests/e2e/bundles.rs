//! End-to-end: signed policy bundles across HQ and the appliance, through the `otgate` binary.
//!
//! HQ makes three authority keys and a 2-of-3 trust root, signs a bundle with two of them and
//! serves it over HTTPS; the appliance pulls it with HQ's certificate pinned and shows its
//! status. HQ then rotates the trust root to revoke one key, and a bundle signed with the revoked
//! key is refused, by pull and by import, with the active policy unchanged.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use otgate::datadir::DataDir;

fn otgate_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let bin = dir.join("otgate");
    if !bin.exists() {
        // `cargo test -p otgate-tests` alone does not build the binary; `.ci/test` does.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "otgate", "--bin", "otgate"])
            .status()
            .unwrap();
        assert!(status.success(), "building the otgate binary failed");
    }
    bin
}

fn run(args: &[&str]) -> Output {
    let output = Command::new(otgate_bin())
        .args(args)
        .env_remove("OTGATE_DATA_DIR")
        .output()
        .unwrap();
    eprintln!(
        "$ otgate {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn ok(args: &[&str]) -> String {
    let output = run(args);
    assert!(output.status.success(), "otgate {} failed", args.join(" "));
    String::from_utf8(output.stdout).unwrap()
}

fn refused(args: &[&str]) -> String {
    let output = run(args);
    assert_eq!(
        output.status.code(),
        Some(1),
        "otgate {} should exit 1",
        args.join(" ")
    );
    String::from_utf8(output.stderr).unwrap()
}

/// `otgate authority serve`, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path, cert: &Path, key: &Path) -> Server {
    let mut child = Command::new(otgate_bin())
        .args(["authority", "serve"])
        .arg(dir)
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(
        url.starts_with("https://127.0.0.1:"),
        "unexpected serve banner {line:?}"
    );
    Server { child, url }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn status(dd: &str) -> serde_json::Value {
    serde_json::from_str(&ok(&["policy", "status", "--json", "--data-dir", dd])).unwrap()
}

fn key_id(pub_file: &Path) -> String {
    let entry: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pub_file).unwrap()).unwrap();
    entry["key_id"].as_str().unwrap().to_owned()
}

#[test]
fn keygen_sign_two_of_three_serve_pull_status_rotate_and_refuse_the_revoked_key() {
    let tmp = tempfile::tempdir().unwrap();
    let hq = tmp.path().join("hq");
    let served = hq.join("served");
    std::fs::create_dir_all(&served).unwrap();
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/examples/plant.toml");
    let (policy, hq1, hq2, hq3) = (
        s(&policy).to_owned(),
        hq.join("hq1.key"),
        hq.join("hq2.key"),
        hq.join("hq3.key"),
    );

    // HQ: three authority keys, HQ's TLS certificate, a 2-of-3 trust root.
    for (i, key) in [&hq1, &hq2, &hq3].iter().enumerate() {
        ok(&[
            "authority",
            "keygen",
            "--out",
            s(key),
            "--name",
            &format!("hq-{}", i + 1),
        ]);
    }
    let (cert, tls_key) = (hq.join("hq.crt"), hq.join("hq-tls.key"));
    let out = ok(&[
        "authority",
        "keygen",
        "--tls",
        "--out",
        s(&tls_key),
        "--cert-out",
        s(&cert),
        "--name",
        "127.0.0.1",
    ]);
    assert!(out.contains("pin sha256:"));
    let root = hq.join("root.json");
    let pubs: Vec<PathBuf> = [&hq1, &hq2, &hq3]
        .iter()
        .map(|k| k.with_extension("pub"))
        .collect();
    ok(&[
        "authority",
        "root",
        "--site",
        "plant-a",
        "--threshold",
        "2",
        "--key",
        s(&pubs[0]),
        "--key",
        s(&pubs[1]),
        "--key",
        s(&pubs[2]),
        "--out",
        s(&root),
    ]);

    // The appliance, provisioned with the trust root.
    let data = tmp.path().join("appliance");
    let dd = DataDir::new(&data);
    ok(&["init", "--data-dir", s(&data), "--trust", s(&root)]);
    let dd_s = s(&data).to_owned();
    assert!(status(&dd_s)["active"].is_null());

    // HQ signs v1 with two of three authorities, one at a time.
    let v1 = served.join("plant-a-v1.otgb");
    ok(&[
        "authority",
        "sign",
        s(&v1),
        "--key",
        s(&hq1),
        "--policy",
        &policy,
        "--site",
        "plant-a",
        "--bundle-version",
        "1",
    ]);
    let one = run(&["authority", "verify", s(&v1), "--trust", s(&root)]);
    assert_eq!(
        one.status.code(),
        Some(1),
        "one signature of two is not enough"
    );
    assert!(String::from_utf8_lossy(&one.stderr).contains("1 valid signatures, 2 required"));
    ok(&["authority", "sign", s(&v1), "--key", s(&hq3)]);
    ok(&["authority", "verify", s(&v1), "--trust", s(&root)]);

    // Serve; the appliance pulls with the certificate pinned.
    let server = serve(&served, &cert, &tls_key);
    let out = ok(&[
        "policy",
        "pull",
        &server.url,
        "--cert",
        s(&cert),
        "--data-dir",
        &dd_s,
    ]);
    assert!(out.contains("activated policy version 1"), "{out}");
    let st = status(&dd_s);
    assert_eq!(st["active"]["version"], 1);
    assert_eq!(st["active"]["standing"], "valid");
    assert_eq!(
        st["active"]["signers"],
        serde_json::json!([key_id(&pubs[0]), key_id(&pubs[2])])
    );
    assert_eq!(st["last_pull"]["ok"], true);
    assert_eq!(st["trust_root_version"], 1);
    let human = ok(&["policy", "status", "--data-dir", &dd_s]);
    assert!(
        human.contains("version 1") && human.contains("last pull"),
        "{human}"
    );

    // Pulling again is a no-op.
    let out = ok(&[
        "policy",
        "pull",
        &server.url,
        "--cert",
        s(&cert),
        "--data-dir",
        &dd_s,
    ]);
    assert!(out.contains("already active"), "{out}");

    // A server with another certificate is refused, and nothing changes.
    let other_cert = hq.join("other.crt");
    ok(&[
        "authority",
        "keygen",
        "--tls",
        "--out",
        s(&hq.join("other.key")),
        "--cert-out",
        s(&other_cert),
    ]);
    let err = refused(&[
        "policy",
        "pull",
        &server.url,
        "--cert",
        s(&other_cert),
        "--data-dir",
        &dd_s,
    ]);
    assert!(err.contains("is pinned"), "{err}");
    assert_eq!(status(&dd_s)["last_pull"]["ok"], false);

    // HQ rotates the trust root to revoke hq3, signed by the current threshold (hq1 + hq2).
    let root_v2 = hq.join("root-v2.json");
    let hq3_id = key_id(&pubs[2]);
    ok(&[
        "authority",
        "root",
        "--site",
        "plant-a",
        "--threshold",
        "2",
        "--key",
        s(&pubs[0]),
        "--key",
        s(&pubs[1]),
        "--key",
        s(&pubs[2]),
        "--revoke",
        &hq3_id,
        "--root-version",
        "2",
        "--out",
        s(&root_v2),
    ]);
    let v2 = served.join("plant-a-v2.otgb");
    ok(&[
        "authority",
        "sign",
        s(&v2),
        "--key",
        s(&hq1),
        "--policy",
        &policy,
        "--site",
        "plant-a",
        "--bundle-version",
        "2",
        "--previous",
        s(&v1),
        "--trust-root",
        s(&root_v2),
    ]);
    ok(&["authority", "sign", s(&v2), "--key", s(&hq2)]);
    let out = ok(&[
        "policy",
        "pull",
        &server.url,
        "--cert",
        s(&cert),
        "--data-dir",
        &dd_s,
    ]);
    assert!(
        out.contains("activated policy version 2")
            && out.contains("trust root rotated to version 2"),
        "{out}"
    );
    let st = status(&dd_s);
    assert_eq!(
        (
            st["active"]["version"].clone(),
            st["trust_root_version"].clone()
        ),
        (2.into(), 2.into())
    );
    assert_eq!(st["previous"]["version"], 1);
    let active_hash = st["active"]["hash"].clone();

    // A bundle signed with the revoked key (and one good key) is refused, by pull and by import.
    let v3 = served.join("plant-a-v3.otgb");
    ok(&[
        "authority",
        "sign",
        s(&v3),
        "--key",
        s(&hq1),
        "--policy",
        &policy,
        "--site",
        "plant-a",
        "--bundle-version",
        "3",
    ]);
    ok(&["authority", "sign", s(&v3), "--key", s(&hq3)]);
    let err = refused(&[
        "policy",
        "pull",
        &server.url,
        "--cert",
        s(&cert),
        "--data-dir",
        &dd_s,
    ]);
    assert!(err.contains(&format!("revoked key {hq3_id}")), "{err}");
    assert!(err.contains("active policy is unchanged"), "{err}");
    let err = refused(&["policy", "import", s(&v3), "--data-dir", &dd_s]);
    assert!(err.contains(&format!("revoked key {hq3_id}")), "{err}");
    let st = status(&dd_s);
    assert_eq!(st["active"]["version"], 2);
    assert_eq!(st["active"]["hash"], active_hash);
    // A truncated file from removable media is refused by import, naming the reason.
    let truncated = hq.join("truncated.otgb");
    let whole = std::fs::read(&v3).unwrap();
    std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
    let err = refused(&["policy", "import", s(&truncated), "--data-dir", &dd_s]);
    assert!(err.contains("truncated"), "{err}");
    // Creating a bundle never overwrites a different file without --force.
    let err = refused(&[
        "authority",
        "sign",
        s(&v3),
        "--key",
        s(&hq2),
        "--policy",
        &policy,
        "--site",
        "plant-a",
        "--bundle-version",
        "4",
    ]);
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&v3).unwrap(), whole);
    assert_eq!(status(&dd_s)["active"]["hash"], active_hash);
    drop(server);

    // The journal tells which policy was in force and why v3 was refused.
    let kinds: Vec<String> = otgate::journal::read::JournalReader::open(&dd.journal_dir())
        .unwrap()
        .filter_map(|r| {
            let value = serde_json::to_value(r.unwrap().event).unwrap();
            (value["category"] == "policy").then(|| {
                format!(
                    "{}:{}",
                    value["kind"].as_str().unwrap(),
                    value["reason"].as_str().unwrap_or("")
                )
            })
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "bundle_activated:",
            "bundle_activated:",
            "trust_root_rotated:",
            "bundle_refused:revoked_key",
            "bundle_refused:revoked_key",
            "bundle_refused:truncated"
        ]
    );
}
