use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

pub fn root() -> PathBuf {
    tollgate_integration::paths::repo_root()
}

/// Runs a command in the repo root, echoing it; an error names it.
pub fn run(command: &mut Command) -> Result<(), String> {
    command.current_dir(root());
    let shown = format!("{command:?}").replace('"', "");
    println!("$ {shown}");
    let status = command.status().map_err(|e| format!("{shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown}: {status}"))
    }
}

/// Output of a command that is only asked something; `None` if it fails.
pub fn ask(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).current_dir(root()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Runs a named step and prints how long it took.
pub fn step(name: &str, f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    println!("\n==> {name}");
    let start = Instant::now();
    let result = f();
    println!(
        "<== {name}: {} in {:.1}s",
        if result.is_ok() { "ok" } else { "FAILED" },
        start.elapsed().as_secs_f64()
    );
    result.map_err(|e| format!("{name}: {e}"))
}

/// Runs `cargo test`, echoing its output, and returns the sum of the
/// `N passed` of its `test result: ok.` lines.
pub fn run_counting(command: &mut Command) -> Result<u64, String> {
    use std::io::{BufRead, BufReader};
    command.current_dir(root()).stdout(std::process::Stdio::piped());
    let shown = format!("{command:?}").replace('"', "");
    println!("$ {shown}");
    let mut child = command.spawn().map_err(|e| format!("{shown}: {e}"))?;
    let mut passed = 0;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ok. ") {
                passed += rest
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    let status = child.wait().map_err(|e| format!("{shown}: {e}"))?;
    if status.success() {
        Ok(passed)
    } else {
        Err(format!("{shown}: {status}"))
    }
}
