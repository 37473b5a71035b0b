//! The canonical JSON form (what signed bundles carry) means exactly what its TOML source means,
//! is validated exactly like it, and has one encoding: anything else is refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::path::{Path, PathBuf};

use otgate_policy::{canonical_json, parse, parse_canonical, Policy, Severity};

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// Everything a policy means (not where its warnings point).
fn meaning(p: &Policy) -> String {
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        p.site,
        p.segments,
        p.assets,
        p.roles,
        p.it_identities,
        p.ot_identities,
        p.schedules,
        p.rules,
        p.break_glass,
        p.validity
    )
}

fn kinds(p: &Policy) -> Vec<String> {
    let mut k: Vec<String> = p.warnings().iter().map(|d| d.kind.to_string()).collect();
    k.sort();
    k
}

#[test]
fn valid_policies_mean_the_same_in_canonical_form() {
    let mut all = files("examples");
    all.extend(files("tests/data/valid"));
    assert!(all.len() >= 4);
    for path in all {
        let source = std::fs::read_to_string(&path).unwrap();
        let from_toml = parse(&source, "p.toml").unwrap();
        let json = canonical_json(&source, "p.toml").unwrap();
        assert!(!json.contains(&b'\n'), "{}: compact", path.display());
        let from_json = parse_canonical(&json, "p.json")
            .unwrap_or_else(|d| panic!("{}: canonical form refused:\n{d}", path.display()));
        assert_eq!(
            meaning(&from_toml),
            meaning(&from_json),
            "{}",
            path.display()
        );
        assert_eq!(kinds(&from_toml), kinds(&from_json), "{}", path.display());
        // Encoding again gives the same bytes: one meaning, one form.
        let reformatted = source.replace(" = ", "   =   ") + "\n# a comment\n";
        assert_eq!(canonical_json(&reformatted, "p.toml").unwrap(), json);
    }
}

#[test]
fn invalid_policies_are_refused_with_the_same_errors_in_canonical_form() {
    let mut checked = 0;
    for path in files("tests/data/invalid") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let source = std::fs::read_to_string(&path).unwrap();
        let from_toml = parse(&source, &name).unwrap_err();
        // Syntax and shape errors never reach a canonical form.
        let Ok(json) = canonical_json(&source, &name) else {
            continue;
        };
        checked += 1;
        let from_json = parse_canonical(&json, "p.json").unwrap_err();
        let texts = |d: &otgate_policy::Diagnostics| {
            let mut t: Vec<String> = d
                .iter()
                .filter(|d| d.severity == Severity::Error)
                // Lines exist only in the TOML.
                .map(|d| {
                    let text = d.kind.to_string();
                    match text.split_once(" (first defined on line") {
                        Some((head, _)) => head.to_owned(),
                        None => text,
                    }
                })
                .collect();
            t.sort();
            t
        };
        assert_eq!(texts(&from_toml), texts(&from_json), "{name}");
        assert!(from_json.iter().all(|d| d.file == "p.json"));
    }
    assert!(
        checked >= 30,
        "only {checked} invalid policies reached a canonical form"
    );
}

#[test]
fn anything_but_the_canonical_encoding_is_refused() {
    let source = include_str!("../examples/plant.toml");
    let json = String::from_utf8(canonical_json(source, "plant.toml").unwrap()).unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let cases = [
        ("pretty", serde_json::to_string_pretty(&value).unwrap()),
        ("trailing space", format!("{json} ")),
        ("leading space", format!(" {json}")),
        (
            "an empty list written out",
            json.replacen("\"site\":{", "\"segments\":[],\"site\":{", 1),
        ),
        // serde_json's own maps sort their keys; the canonical form keeps the TOML's field order.
        ("fields reordered", serde_json::to_string(&value).unwrap()),
        (
            "escaped differently",
            json.replacen("plant-a", "plant\\u002da", 1),
        ),
    ];
    for (what, text) in cases {
        assert_ne!(text, json, "{what}: the case changes the bytes");
        let err = parse_canonical(text.as_bytes(), "p.json").unwrap_err();
        assert!(err.to_string().contains("canonical"), "{what}: {err}");
    }
    for (what, text) in [
        ("truncated", &json[..json.len() / 2]),
        ("not JSON", "[site]\nid = \"x\""),
        (
            "unknown field",
            "{\"site\":{\"id\":\"a\",\"timezone\":\"UTC\"},\"extra\":1}",
        ),
    ] {
        let err = parse_canonical(text.as_bytes(), "p.json").unwrap_err();
        assert!(err.to_string().starts_with("p.json:"), "{what}: {err}");
    }
}

#[test]
fn the_policy_json_fuzz_seeds_are_the_canonical_forms_of_the_toml_seeds() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let out = fuzz.join("policy_json");
    let write = std::env::var_os("OTGATE_WRITE_FUZZ_SEEDS").is_some();
    if write {
        std::fs::create_dir_all(&out).unwrap();
    }
    let mut seeds = 0;
    for entry in std::fs::read_dir(fuzz.join("policy_toml")).unwrap() {
        let path = entry.unwrap().path();
        let source = std::fs::read_to_string(&path).unwrap_or_default();
        let Ok(json) = canonical_json(&source, "seed.toml") else {
            continue;
        };
        let name = path.file_stem().unwrap().to_string_lossy().into_owned() + ".json";
        if write {
            std::fs::write(out.join(&name), &json).unwrap();
        }
        otgate_policy::fuzzing::policy_json(&json);
        seeds += 1;
    }
    assert!(seeds >= 10);
    for entry in std::fs::read_dir(&out).unwrap() {
        otgate_policy::fuzzing::policy_json(&std::fs::read(entry.unwrap().path()).unwrap());
    }
}
