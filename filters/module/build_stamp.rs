//! The build stamp the module logs at start-up: the commit it was built
//! from, `-dirty` when the worktree had changes, and the cargo profile
//! (`1a2b3c4d5e6f-dirty/release`; `unknown/release` without git). Shared by
//! build.rs, which runs git, and the module's unit tests, which check it.

use std::path::{Path, PathBuf};

/// What the module is built from, relative to the workspace root: `-dirty`
/// looks at these, and a change to them re-runs build.rs. (A change
/// elsewhere, such as a README, does not rebuild the module.)
pub const SOURCES: &[&str] = &["filters", "Cargo.toml", "Cargo.lock", "rust-toolchain.toml"];

/// Hex digits of the commit in the stamp (`git rev-parse --short=12`).
pub const COMMIT_DIGITS: usize = 12;

/// The stamp from what git said: `commit` is `None` without git or a repository.
pub fn stamp(commit: Option<&str>, dirty: bool, profile: &str) -> String {
    match commit.map(str::trim).filter(|c| is_commit(c)) {
        Some(commit) if dirty => format!("{commit}-dirty/{profile}"),
        Some(commit) => format!("{commit}/{profile}"),
        None => format!("unknown/{profile}"),
    }
}

/// A short commit as `git rev-parse --short=12` prints it (git may print
/// more digits when 12 would be ambiguous).
pub fn is_commit(text: &str) -> bool {
    text.len() >= COMMIT_DIGITS && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `text` is a stamp `stamp` can make.
pub fn is_stamp(text: &str) -> bool {
    let Some((build, profile)) = text.rsplit_once('/') else {
        return false;
    };
    let commit = build.strip_suffix("-dirty").unwrap_or(build);
    let profile_ok = !profile.is_empty()
        && profile
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    profile_ok && (build == "unknown" || is_commit(commit))
}

/// The files whose change means another commit or other changes, given
/// `git rev-parse --git-dir` and `--git-common-dir` (they differ in a
/// worktree: HEAD and the index are the worktree's, refs are shared) and
/// the text of HEAD: HEAD, the branch's ref file (loose, or packed-refs),
/// and the index.
pub fn watched(git_dir: &Path, common_dir: &Path, head: &str) -> Vec<PathBuf> {
    let mut files = vec![git_dir.join("HEAD"), git_dir.join("index")];
    if let Some(reference) = head.trim().strip_prefix("ref: ") {
        files.push(common_dir.join(reference));
        files.push(common_dir.join("packed-refs"));
    }
    files
}
