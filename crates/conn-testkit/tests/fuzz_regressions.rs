//! Every saved fuzz input (`fuzz/regressions/<target>/*`) through its target's check, on stable
//! and without cargo-fuzz; and the fuzz targets, their checks and their input directories kept
//! in step, so that a new target cannot go without a check or a directory without a target.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use conn_testkit::fuzz::{TARGETS, regression_inputs, regressions_dir};

fn fuzz_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz"))
}

/// The `[[bin]]` names of `fuzz/Cargo.toml`: the fuzz targets.
fn declared_targets() -> Vec<String> {
    let manifest = fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    let mut names = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin && let Some(value) = line.strip_prefix("name = ") {
            names.push(value.trim_matches('"').to_owned());
        }
    }
    names
}

#[test]
fn every_target_calls_its_shared_check() {
    let declared = declared_targets();
    assert!(!declared.is_empty(), "no [[bin]] in fuzz/Cargo.toml");
    // mux_decode's check lives next to the private codec in conn-openssh, whose unit tests
    // replay its saved inputs; every other target's check is here.
    let elsewhere = [("mux_decode", "conn_openssh::fuzz_mux_decode(")];
    for name in &declared {
        let source = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        let text = fs::read_to_string(&source).unwrap_or_else(|e| panic!("{source:?}: {e}"));
        let call = elsewhere
            .iter()
            .find(|(target, _)| target == name)
            .map_or(format!("conn_testkit::fuzz::{name}("), |(_, call)| {
                call.to_string()
            });
        assert!(
            text.contains(&call),
            "{} must call {call}…), the check its regression inputs replay",
            source.display()
        );
    }
    let mut checked: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    checked.extend(elsewhere.iter().map(|(name, _)| *name));
    let mut declared: Vec<&str> = declared.iter().map(String::as_str).collect();
    checked.sort_unstable();
    declared.sort_unstable();
    assert_eq!(checked, declared, "the targets' checks vs fuzz/Cargo.toml");
}

#[test]
fn every_saved_input_passes_its_targets_check() {
    let declared = declared_targets();
    for entry in fs::read_dir(regressions_dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            declared.contains(&name),
            "fuzz/regressions/{name}/ names no fuzz target of fuzz/Cargo.toml"
        );
    }
    let mut replayed = 0;
    for name in &declared {
        let inputs = regression_inputs(name).unwrap();
        let Some((_, check)) = TARGETS.iter().find(|(target, _)| target == name) else {
            // Replayed by conn-openssh's unit tests (its check is next to the codec).
            continue;
        };
        for (path, bytes) in inputs {
            if catch_unwind(AssertUnwindSafe(|| check(&bytes))).is_err() {
                panic!(
                    "{} fails the {name} check again (its panic message is above); replay: \
                     cd fuzz && cargo +nightly fuzz run {name} {}",
                    path.display(),
                    path.display()
                );
            }
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no saved input found under fuzz/regressions/");
    println!("replayed {replayed} saved fuzz input(s)");
}
