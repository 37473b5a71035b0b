//! Every file in `tests/data/invalid/` is a bad policy that must be refused with exactly the
//! errors its `# expect: LINE:COLUMN: text` comments name (at the end of the file, so they do
//! not shift line numbers). Every file in `tests/data/valid/` must parse, with exactly the
//! warnings its `# warn: LINE:COLUMN: text` comments name.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::path::{Path, PathBuf};

use otgate_policy::{parse, Diagnostic, Severity};

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// `(line, column, text)` from comments starting with `prefix`.
fn expectations(source: &str, prefix: &str) -> Vec<(u32, u32, String)> {
    source
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(|rest| {
            let mut parts = rest.trim().splitn(3, ':');
            let line = parts.next().unwrap().trim().parse().unwrap();
            let column = parts.next().unwrap().trim().parse().unwrap();
            (line, column, parts.next().unwrap().trim().to_owned())
        })
        .collect()
}

fn compare(name: &str, expected: &[(u32, u32, String)], actual: &[&Diagnostic]) -> Option<String> {
    let shown: Vec<String> = actual
        .iter()
        .map(|d| format!("{}:{}: {}", d.line, d.column, d.kind))
        .collect();
    let mut problems = Vec::new();
    if expected.is_empty() {
        problems.push("no expectations in the file".to_owned());
    }
    for (line, column, text) in expected {
        if !actual.iter().any(|d| {
            d.line == *line && d.column == *column && d.kind.to_string().contains(text.as_str())
        }) {
            problems.push(format!("missing {line}:{column}: {text}"));
        }
    }
    if actual.len() != expected.len() {
        problems.push(format!(
            "expected {} diagnostics, got {}",
            expected.len(),
            actual.len()
        ));
    }
    (!problems.is_empty()).then(|| {
        format!(
            "{name}: {}\n  actual:\n    {}",
            problems.join("; "),
            shown.join("\n    ")
        )
    })
}

#[test]
fn every_invalid_policy_is_refused_with_its_errors() {
    let mut failures = Vec::new();
    let files = files("invalid");
    assert!(files.len() >= 30, "the folder holds the invalid policies");
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let source = std::fs::read_to_string(&path).unwrap();
        match parse(&source, &name) {
            Ok(_) => failures.push(format!("{name}: parsed, but must be refused")),
            Err(diags) => {
                let errors: Vec<&Diagnostic> = diags.errors().collect();
                assert!(diags
                    .iter()
                    .all(|d| d.file == name && d.line >= 1 && d.column >= 1));
                if let Some(f) = compare(&name, &expectations(&source, "# expect:"), &errors) {
                    failures.push(f);
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn valid_policies_parse_with_their_warnings() {
    let mut failures = Vec::new();
    for path in files("valid") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let source = std::fs::read_to_string(&path).unwrap();
        match parse(&source, &name) {
            Err(d) => failures.push(format!("{name}: refused:\n{d}")),
            Ok(p) => {
                let warnings: Vec<&Diagnostic> = p
                    .warnings()
                    .iter()
                    .filter(|d| d.severity == Severity::Warning)
                    .collect();
                let expected = expectations(&source, "# warn:");
                if expected.is_empty() && warnings.is_empty() {
                    continue;
                }
                if let Some(f) = compare(&name, &expected, &warnings) {
                    failures.push(f);
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn diagnostics_display_as_file_line_column() {
    let source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/invalid/dangling_segment.toml"),
    )
    .unwrap();
    let err = parse(&source, "dangling_segment.toml").unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("dangling_segment.toml:18:11: unknown segment `line9`"),
        "{text}"
    );
}
