//! The fuzz corpus stays decodable and the fuzz entry point accepts it. Run with
//! `OTGATE_WRITE_FUZZ_SEEDS=1` to regenerate `sync/fuzz/corpus/bundle/`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::path::Path;

#[test]
fn fuzz_seeds_decode_and_pass_the_fuzz_entry_point() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/bundle");
    let seeds = otgate_sync::fuzzing::seeds(include_str!("../../policies/examples/plant.toml"));
    assert_eq!(seeds.len(), 5);
    if std::env::var_os("OTGATE_WRITE_FUZZ_SEEDS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(format!("{name}.otgb")), bytes).unwrap();
        }
    }
    for (_, bytes) in &seeds {
        otgate_sync::fuzzing::bundle(bytes);
    }
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        otgate_sync::Bundle::decode(&bytes).unwrap();
        otgate_sync::fuzzing::bundle(&bytes);
    }
}
