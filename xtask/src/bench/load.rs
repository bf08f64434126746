//! One bounded wrk load against one Envoy, and what it cost that Envoy
//! (its own process accounting in /proc) and what Envoy answered (its stats).

use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tollgate_integration::Envoy;

/// wrk's own summary, printed by the script's `done` as one JSON line.
const DONE_MARK: &str = "BENCH ";

/// The Lua script: requests are formatted once in `init` from a file of
/// header blocks, one request per line, and cycled; `done` prints the
/// numbers wrk's text output lacks (p99.9) as JSON.
const SCRIPT: &str = r#"
local requests = {}
local i = 0
init = function(args)
  for line in io.lines(args[1]) do
    local headers = {}
    for name, value in string.gmatch(line, "([^\t]+)\t([^\t]*)\t") do
      headers[name] = value
    end
    requests[#requests + 1] = wrk.format("GET", args[2], headers)
  end
  i = math.random(#requests) - 1
end
request = function()
  i = i % #requests + 1
  return requests[i]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH {"requests":%d,"duration_us":%d,"socket_errors":%d,"status_errors":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"#;

/// Writes the script and one request file per configuration under `dir`.
pub fn write_script(dir: &Path) -> Result<PathBuf, String> {
    let path = dir.join("load.lua");
    std::fs::write(&path, SCRIPT).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// Each line: `name\tvalue\t` pairs, one request.
pub fn write_requests(path: &Path, requests: &[Vec<(String, String)>]) -> Result<(), String> {
    let text: String = requests
        .iter()
        .map(|headers| {
            let mut line: String = headers.iter().map(|(n, v)| format!("{n}\t{v}\t")).collect();
            line.push('\n');
            line
        })
        .collect();
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

pub struct Spec<'a> {
    pub script: &'a Path,
    pub requests: &'a Path,
    pub path: &'a str,
    pub connections: u32,
    pub threads: u32,
    pub seconds: u64,
    /// `taskset -c` list for wrk.
    pub cpus: &'a str,
}

#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub requests: u64,
    pub rps: f64,
    /// Envoy's CPU time over the load.
    pub cpu_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// Answers other than 2xx (Envoy's count) plus wrk's socket errors.
    pub failures: u64,
}

/// Runs the load, measuring Envoy's CPU around it.
pub fn measure(envoy: &Envoy, spec: &Spec, tick_us: f64) -> Result<Sample, String> {
    let (done0, ok0) = answered(envoy)?;
    let cpu0 = cpu_ticks(envoy.pid())?;
    let wrk = run_wrk(envoy, spec)?;
    let cpu1 = cpu_ticks(envoy.pid())?;
    let (done1, ok1) = answered(envoy)?;
    let number = |key: &str| wrk[key].as_f64().unwrap_or(0.0);
    let requests = done1.saturating_sub(done0);
    let seconds = number("duration_us") / 1e6;
    Ok(Sample {
        requests,
        rps: if seconds > 0.0 { requests as f64 / seconds } else { 0.0 },
        cpu_us: cpu1.saturating_sub(cpu0) as f64 * tick_us,
        p50_us: number("p50_us"),
        p99_us: number("p99_us"),
        p999_us: number("p999_us"),
        failures: requests.saturating_sub(ok1.saturating_sub(ok0)) + number("socket_errors") as u64,
    })
}

fn run_wrk(envoy: &Envoy, spec: &Spec) -> Result<Value, String> {
    let url = format!("http://{}{}", envoy.addr(), spec.path);
    let mut child = Command::new("taskset")
        .args(["-c", spec.cpus, "wrk", "--latency", "--timeout", "2s"])
        .arg(format!("-t{}", spec.threads))
        .arg(format!("-c{}", spec.connections))
        .arg(format!("-d{}s", spec.seconds))
        .arg("-s")
        .arg(spec.script)
        .arg(&url)
        .arg("--")
        .arg(spec.requests)
        .arg(spec.path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("wrk: {e} (run `cargo xtask setup`)"))?;
    let deadline = Instant::now() + Duration::from_secs(spec.seconds + 30);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("wrk against {url} did not stop in time"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    let summary = out.lines().find_map(|l| l.strip_prefix(DONE_MARK));
    match summary {
        Some(json) if status.success() => serde_json::from_str(json).map_err(|e| format!("wrk summary {json}: {e}")),
        _ => {
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = stderr.read_to_string(&mut err);
            }
            Err(format!("wrk {status}: {out}{err}"))
        }
    }
}

/// Requests Envoy completed and answered 2xx on the ingress listener.
fn answered(envoy: &Envoy) -> Result<(u64, u64), String> {
    let stats = envoy.admin_get("/stats?filter=ingress.downstream_rq_")?.text();
    let get = |name: &str| {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(": ")?.trim().parse::<u64>().ok())
            .ok_or_else(|| format!("no {name} in Envoy stats: {stats}"))
    };
    Ok((
        get("http.ingress.downstream_rq_completed")?,
        get("http.ingress.downstream_rq_2xx")?,
    ))
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    ticks_of(&stat).ok_or_else(|| format!("/proc/{pid}/stat: {stat}"))
}

/// Fields 14 and 15 of a `/proc/<pid>/stat` line. The command name (field
/// 2) may hold spaces and parentheses; the fields after its last `)` do not.
pub fn ticks_of(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// Resident memory of a process, in MiB.
pub fn rss_mib(pid: u32) -> Result<f64, String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    rss_of(&status).ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))
}

pub fn rss_of(status: &str) -> Option<f64> {
    let kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: f64 = kib.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib / 1024.0)
}

/// Microseconds per clock tick (`getconf CLK_TCK`, 100 on Linux).
pub fn tick_us() -> f64 {
    crate::util::ask("getconf", &["CLK_TCK"])
        .and_then(|t| t.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .map_or(10_000.0, |hz| 1e6 / hz)
}
