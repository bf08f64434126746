//! `cargo xtask fuzz`: the libFuzzer targets of fuzz/ (cargo-fuzz), one
//! after the other, each for a given time; or `--replay`, each target once
//! over its committed corpus (what CI runs).
//!
//! Built with `-s none` (no sanitizer): cargo-fuzz's default AddressSanitizer
//! needs `-Zsanitizer`, a nightly flag, and the toolchain here is stable
//! (rust-toolchain.toml). Coverage instrumentation (`-Cpasses=sancov-module`)
//! is a stable flag, and core forbids `unsafe`, so what ASan would catch is
//! out of reach anyway; panics, assertion failures and timeouts still stop
//! the run.
//!
//! New inputs libFuzzer finds go to fuzz/target/corpus/TARGET (not
//! committed); the committed seeds are fuzz/corpus/TARGET (`make_seeds.py`).
//! A crash leaves its input in fuzz/artifacts/TARGET/ and fails the command.

use crate::util::{ask, cargo, root, run};
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

/// The longest one input may take before libFuzzer calls it a hang, in
/// seconds (the slowest, an RSA differential input, takes tens of ms).
const INPUT_TIMEOUT: u64 = 20;

/// What one target's run gave.
struct Outcome {
    target: String,
    /// libFuzzer's own count (`Done N runs in S second(s)`), without the build.
    seconds: u64,
    executions: u64,
    passed: bool,
}

pub fn all(seconds: u64, only: &[String], replay: bool) -> Result<(), String> {
    if ask("cargo", &["fuzz", "--version"]).is_none() {
        return Err("cargo-fuzz is missing; run `cargo xtask setup`".into());
    }
    let all = targets()?;
    if let Some(unknown) = only.iter().find(|t| !all.contains(t)) {
        return Err(format!("no fuzz target {unknown}; there are: {}", all.join(", ")));
    }
    let chosen: Vec<String> = all
        .into_iter()
        .filter(|t| only.is_empty() || only.contains(t))
        .collect();
    run(cargo().args(["fuzz", "build", "-s", "none"]))?;
    let mut outcomes = Vec::new();
    for target in &chosen {
        outcomes.push(run_target(target, seconds, replay)?);
    }
    println!("\nfuzz {}:", if replay { "corpus replay" } else { "runs" });
    for o in &outcomes {
        println!(
            "  {:<18} {:>6} s {:>12} executions  {}",
            o.target,
            o.seconds,
            o.executions,
            if o.passed {
                "no crash"
            } else {
                "CRASH (see fuzz/artifacts)"
            }
        );
    }
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| !o.passed)
        .map(|o| o.target.as_str())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("fuzz targets failed: {}", failed.join(", ")))
    }
}

/// The targets cargo-fuzz knows (`cargo fuzz list`).
fn targets() -> Result<Vec<String>, String> {
    let listed = ask("cargo", &["fuzz", "list"]).ok_or("`cargo fuzz list` failed")?;
    let targets: Vec<String> = listed
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if targets.is_empty() {
        return Err("`cargo fuzz list` lists no target".into());
    }
    Ok(targets)
}

fn run_target(target: &str, seconds: u64, replay: bool) -> Result<Outcome, String> {
    let root = root();
    let seeds = root.join("fuzz/corpus").join(target);
    let found = root.join("fuzz/target/corpus").join(target);
    let logs = root.join("fuzz/target/logs");
    for dir in [&seeds, &found, &logs] {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let log_path = logs.join(format!("{target}.log"));
    let log = std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let mut command = cargo();
    command.args(["fuzz", "run", "-s", "none", target]).current_dir(&root);
    if replay {
        // Only the committed inputs, each once: -runs=0 stops after them.
        command.arg(&seeds).args(["--", "-runs=0"]);
    } else {
        // Finds go to the first directory; the seeds are read, not written.
        command
            .arg(&found)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"));
    }
    command
        .arg(format!("-timeout={INPUT_TIMEOUT}"))
        .arg("-print_final_stats=1")
        .stdout(Stdio::null())
        .stderr(log);
    println!(
        "\n==> fuzz {target}: {} (log: {})",
        if replay {
            "replaying the corpus".to_string()
        } else {
            format!("{seconds} s")
        },
        log_path.display()
    );
    let start = Instant::now();
    let status = command.status().map_err(|e| format!("cargo fuzz run {target}: {e}"))?;
    let wall = start.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let executions = final_stat(&text, "stat::number_of_executed_units").unwrap_or(0);
    let seconds = fuzzed_seconds(&text).unwrap_or(0);
    if !status.success() {
        print_tail(&text, &log_path);
    }
    println!("<== fuzz {target}: {executions} executions in {seconds} s ({wall:.0} s with the build), {status}");
    Ok(Outcome {
        target: target.to_string(),
        seconds,
        executions,
        passed: status.success(),
    })
}

/// `stat::NAME: VALUE` of libFuzzer's `-print_final_stats=1`.
fn final_stat(log: &str, name: &str) -> Option<u64> {
    log.lines()
        .rev()
        .find_map(|line| line.strip_prefix(name)?.trim_start_matches(':').trim().parse().ok())
}

/// S of libFuzzer's last `Done N runs in S second(s)`.
fn fuzzed_seconds(log: &str) -> Option<u64> {
    log.lines().rev().find_map(|line| {
        line.strip_prefix("Done ")?
            .split_once(" runs in ")?
            .1
            .split(' ')
            .next()?
            .parse()
            .ok()
    })
}

/// The end of a failed run's log: the panic and the crashing input's path.
fn print_tail(text: &str, path: &Path) {
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines.get(lines.len().saturating_sub(40)..).unwrap_or_default();
    println!("--- last lines of {}:", path.display());
    for line in tail {
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::{final_stat, fuzzed_seconds};

    #[test]
    fn the_execution_count_is_read_from_the_final_stats() {
        let log = "#1024\tpulse  cov: 3\nDone 5000 runs in 2 second(s)\nstat::number_of_executed_units: 5001\nstat::average_exec_per_sec:     2500\n";
        assert_eq!(final_stat(log, "stat::number_of_executed_units"), Some(5001));
        assert_eq!(final_stat(log, "stat::average_exec_per_sec"), Some(2500));
        assert_eq!(final_stat("no stats\n", "stat::number_of_executed_units"), None);
        assert_eq!(fuzzed_seconds(log), Some(2));
        assert_eq!(fuzzed_seconds("#1 INITED\n"), None);
    }
}
