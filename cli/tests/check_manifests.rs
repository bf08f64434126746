//! `tollgate check-manifests` on the fixtures: every valid WasmPlugin passes,
//! every invalid one fails with exactly the one problem its `# expect:` line
//! names, and every CEL rule of the vendored CRD has a fixture that fails by it.

#![allow(clippy::panic, clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use tollgate_cli::manifests::{check_dir, check_paths, crd_rules, Checker, Report};

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/manifests").join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

fn check_file(checker: &Checker, file: &Path) -> Report {
    let mut report = Report::default();
    report.check_text(checker, file, &std::fs::read_to_string(file).unwrap());
    report
}

fn expectation(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let line = text.lines().find_map(|l| l.strip_prefix("# expect: "));
    line.unwrap_or_else(|| panic!("{}: no `# expect:` line", file.display()))
        .to_string()
}

#[test]
fn every_valid_file_passes() {
    let checker = Checker::new().unwrap();
    let files = fixtures("valid");
    assert!(files.len() >= 5, "{files:?}");
    for file in files {
        let report = check_file(&checker, &file);
        let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        assert!(problems.is_empty(), "{problems:#?}");
        assert!(report.plugins >= 1, "{}: no WasmPlugin", file.display());
    }
}

#[test]
fn every_invalid_file_fails_by_exactly_its_expected_problem() {
    let checker = Checker::new().unwrap();
    let files = fixtures("invalid");
    assert!(files.len() >= 20, "{files:?}");
    for file in files {
        let expect = expectation(&file);
        let report = check_file(&checker, &file);
        let problems: Vec<String> = report.problems.iter().map(|p| p.finding.to_string()).collect();
        assert_eq!(report.plugins, 1, "{}", file.display());
        assert_eq!(problems.len(), 1, "{}: {problems:#?}", file.display());
        assert!(
            problems[0].contains(&expect),
            "{}: {:?} lacks {expect:?}",
            file.display(),
            problems[0]
        );
    }
}

#[test]
fn every_cel_rule_of_the_crd_has_a_failing_fixture() {
    let checker = Checker::new().unwrap();
    let rules = crd_rules().unwrap();
    // The vendored CRD's rule count: a changed CRD is looked at, not just taken.
    assert_eq!(rules.len(), 8, "{rules:#?}");
    // oldSelf rules cannot fail on a manifest (no stored object): none yet.
    assert!(rules.iter().all(|(_, r)| !r.is_transition()), "{rules:#?}");
    let mut failed_by = BTreeSet::new();
    for file in fixtures("invalid") {
        for problem in check_file(&checker, &file).problems {
            failed_by.extend(problem.finding.rule.clone());
        }
    }
    for (key, rule) in &rules {
        assert!(
            failed_by.contains(key),
            "no invalid fixture fails by {key} ({:?})",
            rule.message
        );
    }
}

#[test]
fn directories_are_walked_and_other_kinds_counted() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/manifests");
    let valid = check_dir(&root.join("valid")).unwrap();
    assert!(valid.problems.is_empty(), "{:?}", valid.problems);
    assert_eq!((valid.files, valid.plugins, valid.skipped), (5, 5, 1));
    let all = check_dir(&root).unwrap();
    assert_eq!(all.files, fixtures("valid").len() + fixtures("invalid").len());
    assert_eq!(all.problems.len(), fixtures("invalid").len());
}

#[test]
fn the_command_lists_every_problem_and_fails() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/manifests");
    let run = |dir: &Path| {
        Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .arg("check-manifests")
            .arg(dir)
            .output()
            .unwrap()
    };

    let ok = run(&root.join("valid"));
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{stdout}{}", String::from_utf8_lossy(&ok.stderr));
    assert!(
        stdout.contains("ok: 5 WasmPlugin(s) in 5 file(s), skipped 1 other kinds"),
        "{stdout}"
    );

    let bad = run(&root.join("invalid"));
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(stdout.lines().count(), fixtures("invalid").len(), "{stdout}");
    let file = root.join("invalid/cel-url-scheme.yaml");
    let want = format!(
        "{}: document 1 (tollgate): spec.url: url must have schema one of [http, https, file, oci]",
        file.display()
    );
    assert!(stdout.lines().any(|l| l == want), "{want} not in {stdout}");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains(&format!("{} problem(s)", fixtures("invalid").len())),
        "{stderr}"
    );

    let empty = tempdir();
    let none = run(&empty);
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no WasmPlugin found"));
    std::fs::remove_dir_all(&empty).unwrap();
}

/// As `kubectl apply -f`: a file is checked as given (any name), several
/// paths are checked in order, and a missing one is an error naming it.
#[test]
fn files_and_several_paths_are_checked() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/manifests");
    let file = root.join("invalid/cel-url-scheme.yaml");
    let one = check_dir(&file).unwrap();
    assert_eq!((one.files, one.plugins, one.problems.len()), (1, 1, 1));
    assert_eq!(one.problems[0].file, file);
    let both = check_paths(&[file.clone(), root.join("valid")]).unwrap();
    assert_eq!(both.files, 1 + fixtures("valid").len());
    assert_eq!(both.problems.len(), 1);
    // Its own folder: `tempdir()` is removed by another test.
    let dir = std::env::temp_dir().join(format!("tollgate-check-manifest-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plain = dir.join("plugin.txt");
    std::fs::copy(&file, &plain).unwrap();
    assert_eq!(check_paths(&[plain]).unwrap().problems.len(), 1);
    // Inside a folder only .yaml/.yml files count.
    assert_eq!(check_dir(&dir).unwrap().files, 0);
    let missing = root.join("no-such.yaml");
    let err = check_paths(std::slice::from_ref(&missing)).unwrap_err();
    assert!(err.starts_with(&missing.display().to_string()), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_command_takes_files_folders_and_standard_input() {
    use std::io::Write;
    use std::process::Stdio;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/manifests");
    let valid = fixtures("valid");
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("check-manifests")
        .arg(&valid[0])
        .arg(root.join("valid"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let want = format!("in {} file(s)", valid.len() + 1);
    assert!(stdout.contains(&want), "{stdout}");

    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["check-manifests", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let text = std::fs::read(root.join("invalid/cel-url-scheme.yaml")).unwrap();
    child.stdin.take().unwrap().write_all(&text).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("-: document 1 (tollgate): spec.url:"), "{stdout}");

    let none = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("check-manifests")
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(2), "a path is required");
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-check-manifests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
