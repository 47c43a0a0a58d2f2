//! Replays every committed fuzz input (seed corpus and crash regressions) through the same
//! entry points the fuzzers use, so `cargo test` covers them without cargo-fuzz.

use std::path::Path;

type Entry = fn(&[u8]);

const TARGETS: [(&str, Entry); 9] = [
    ("verify", triforce_net::fuzzing::verify),
    ("frame", triforce_net::fuzzing::frame),
    ("task_json", triforce_net::fuzzing::task_json),
    ("config", triforce_net::fuzzing::config),
    ("body_bounds", triforce_net::fuzzing::body_bounds),
    ("backend_answer", triforce_net::fuzzing::backend_answer),
    (
        "translation_ollama",
        triforce_net::fuzzing::translation_ollama,
    ),
    (
        "translation_responses",
        triforce_net::fuzzing::translation_responses,
    ),
    (
        "translation_anthropic",
        triforce_net::fuzzing::translation_anthropic,
    ),
];

#[test]
fn every_committed_fuzz_input_passes() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut replayed = 0;
    for (target, entry) in TARGETS {
        for folder in ["corpus", "regressions"] {
            let Ok(files) = std::fs::read_dir(fuzz.join(folder).join(target)) else {
                continue;
            };
            for file in files {
                let path = file.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                entry(&data);
                replayed += 1;
            }
        }
    }
    assert!(
        replayed >= 20,
        "the seed corpus is missing: only {replayed} inputs found"
    );
}
