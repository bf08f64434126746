//! The build stamp of the module.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

mod stamp {
    use crate::build_stamp::{is_stamp, stamp, watched, SOURCES};
    use std::path::{Path, PathBuf};

    #[test]
    fn the_stamp_is_commit_dirty_and_profile() {
        assert_eq!(stamp(Some("0123456789ab\n"), false, "release"), "0123456789ab/release");
        assert_eq!(stamp(Some("0123456789ab"), true, "debug"), "0123456789ab-dirty/debug");
        assert_eq!(stamp(None, true, "release"), "unknown/release");
        // Not what `git rev-parse --short=12` prints: no commit is claimed.
        assert_eq!(
            stamp(Some("fatal: not a git repository"), false, "release"),
            "unknown/release"
        );
        assert_eq!(stamp(Some("0123456"), false, "release"), "unknown/release");
        for good in ["0123456789ab/release", "0123456789abc-dirty/debug", "unknown/release"] {
            assert!(is_stamp(good), "{good}");
        }
        for bad in [
            "0123456789ab",
            "0123456789AB/release",
            "unknown-dirty/release",
            "0123456789ab/",
            "abc/release",
        ] {
            assert!(!is_stamp(bad), "{bad}");
        }
    }

    #[test]
    fn the_module_is_stamped_with_the_commit_it_was_built_from() {
        let build = crate::BUILD;
        assert!(is_stamp(build), "{build}");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(&root)
                .args(args)
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        };
        // Without git (or a repository) the stamp must say so.
        let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) else {
            assert!(build.starts_with("unknown/"), "{build}");
            return;
        };
        let mut status = vec!["status", "--porcelain", "--"];
        status.extend(SOURCES);
        let dirty = git(&status).is_some_and(|s| !s.trim().is_empty());
        let profile = build.rsplit_once('/').map(|(_, p)| p).unwrap_or_default();
        // Built from this commit and worktree: build.rs re-ran when they changed.
        assert_eq!(build, stamp(Some(&commit), dirty, profile));
    }

    #[test]
    fn a_worktree_watches_its_own_head_and_index_and_the_shared_ref() {
        let (git_dir, common) = (Path::new("/r/.git/worktrees/w"), Path::new("/r/.git"));
        let files = watched(git_dir, common, "ref: refs/heads/topic\n");
        let want: Vec<PathBuf> = vec![
            git_dir.join("HEAD"),
            git_dir.join("index"),
            common.join("refs/heads/topic"),
            common.join("packed-refs"),
        ];
        assert_eq!(files, want);
        // A detached HEAD holds the commit itself.
        let detached = watched(common, common, "0123456789abcdef0123456789abcdef01234567\n");
        assert_eq!(detached, vec![common.join("HEAD"), common.join("index")]);
    }
}
