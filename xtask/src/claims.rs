//! The README's "Security claims and the tests behind them" names tests;
//! every one must exist, so a renamed or deleted test cannot leave a claim
//! standing on nothing.

#[cfg(test)]
mod tests {
    use crate::util::root;
    use std::path::{Path, PathBuf};

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() && !name.starts_with('.') && name != "target" {
                rust_files(&path, out);
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }

    /// The backticked names in the second column of the claims table.
    fn named_tests(readme: &str) -> Vec<String> {
        let section = readme
            .split("## Security claims and the tests behind them")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .unwrap_or_default();
        section
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| claim") && !l.starts_with("| ---"))
            .filter_map(|l| l.rsplit(" | ").next())
            .flat_map(|cell| {
                cell.split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn every_test_the_security_claims_name_exists() {
        let readme = std::fs::read_to_string(root().join("README.md")).unwrap_or_default();
        let names = named_tests(&readme);
        assert!(names.len() > 50, "the claims table was not found: {names:?}");
        let mut files = Vec::new();
        for dir in ["filters", "integration", "xtask", "cli"] {
            rust_files(&root().join(dir), &mut files);
        }
        let sources: Vec<(PathBuf, String)> = files
            .into_iter()
            .map(|f| {
                let text = std::fs::read_to_string(&f).unwrap_or_default();
                (f, text)
            })
            .collect();
        let missing: Vec<&String> = names
            .iter()
            .filter(|name| {
                let (file, test) = name.split_once("::").unwrap_or(("", name));
                let wanted = format!("fn {test}(");
                !sources.iter().any(|(path, text)| {
                    let in_file = file.is_empty() || path.ends_with(format!("integration/tests/{file}.rs"));
                    in_file && text.contains(&wanted)
                })
            })
            .collect();
        assert!(missing.is_empty(), "README names tests that do not exist: {missing:?}");
    }
}

/// The README's filter-state table is `tollgate_core::state::KEYS`, row for row.
#[cfg(test)]
mod state_table {
    use crate::util::root;

    #[test]
    fn the_readme_filter_state_table_is_the_code_s() {
        let readme = std::fs::read_to_string(root().join("README.md")).unwrap_or_default();
        let section = readme
            .split("### Filter state\n")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .unwrap_or_default();
        let rows: Vec<String> = section
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(str::to_string)
            .collect();
        let expected: Vec<String> = tollgate_core::state::KEYS
            .iter()
            .map(|(key, by, what)| format!("| `{key}` | {by} | {what} |"))
            .collect();
        assert_eq!(rows, expected);
    }
}
