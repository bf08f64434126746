//! Stamps the module with the commit it was built from, `-dirty` when what
//! builds it differs from that commit, and the profile (`TOLLGATE_BUILD`),
//! so the start-up log says what runs. Cargo re-runs this when HEAD, the
//! branch's ref or the index changes, and when the files that build the
//! module do (an edit makes them dirty without touching the index), so the
//! stamp is never stale.

// `is_stamp` is for the module's tests.
#[allow(dead_code)]
#[path = "build_stamp.rs"]
mod build_stamp;

use std::path::{Path, PathBuf};
use std::process::Command;

use build_stamp::SOURCES;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "unknown".to_string());
    let commit = git(&root, &["rev-parse", "--short=12", "HEAD"]);
    // Untracked files count too: a new source file changes the build.
    let mut status = vec!["status", "--porcelain", "--"];
    status.extend(SOURCES);
    let dirty = git(&root, &status).is_some_and(|s| !s.trim().is_empty());
    let stamp = build_stamp::stamp(commit.as_deref(), dirty, &profile);
    println!("cargo:rustc-env=TOLLGATE_BUILD={stamp}");
    for path in watched(&root) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// What git prints, or `None` without git or outside a repository.
/// `GIT_OPTIONAL_LOCKS=0`: `git status` must not rewrite the index it is
/// watched by, or every build would re-run this script.
fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The git files and the sources to watch; only existing ones, since cargo
/// re-runs the script on every build for a path that does not exist.
fn watched(root: &Path) -> Vec<PathBuf> {
    // `--path-format=absolute` (git 2.31+) would do this; older gits print
    // paths relative to `root`, or absolute.
    let dir = |arg: &str| git(root, &["rev-parse", arg]).map(|d| root.join(d.trim()));
    let mut files = match (dir("--git-dir"), dir("--git-common-dir")) {
        (Some(git_dir), Some(common)) => {
            let head = std::fs::read_to_string(git_dir.join("HEAD")).unwrap_or_default();
            build_stamp::watched(&git_dir, &common, &head)
        }
        _ => Vec::new(),
    };
    files.extend(SOURCES.iter().map(|p| root.join(p)));
    files.retain(|f| f.exists());
    files
}
