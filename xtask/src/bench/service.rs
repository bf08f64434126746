//! Redis and the test rate limit service (`tollgate-ratelimit`) as child
//! processes for the global-limit rows: each on a free loopback port, pinned
//! to wrk's CPU so that Envoy's CPU stays Envoy's, killed by PID on drop.

use crate::setup::REDIS_SERVER;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const READY_WITHIN: Duration = Duration::from_secs(15);
/// A port picked by binding 0 may be taken before the child binds it.
const TRIES: usize = 3;

/// A child process that is killed and waited for when dropped.
struct Process {
    name: &'static str,
    child: Child,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("{} exited: {status}", self.name)),
            Ok(None) => None,
            Err(e) => Some(format!("{}: {e}", self.name)),
        }
    }
}

/// Redis and the service counting in it; the service first in drop order.
pub struct Rig {
    service: Process,
    service_port: u16,
    _redis: Process,
}

impl Rig {
    /// Starts both and returns once Redis answered `PING` and the service
    /// accepts connections.
    pub fn start(binary: &Path, cpus: &str) -> Result<Rig, String> {
        let (redis, redis_port) = start_ready(|port| redis(port, cpus), ping_redis)?;
        let url = format!("redis://127.0.0.1:{redis_port}");
        let (service, service_port) = start_ready(|port| service(binary, &url, port, cpus), accepts)?;
        println!(
            "redis-server pid {} on port {redis_port}, tollgate-ratelimit pid {} on port {service_port}",
            redis.child.id(),
            service.child.id()
        );
        Ok(Rig {
            service,
            service_port,
            _redis: redis,
        })
    }

    /// Where Envoy's `ratelimit` cluster points.
    pub fn port(&self) -> u16 {
        self.service_port
    }

    /// Fails if the service died during the run.
    pub fn check(&mut self) -> Result<(), String> {
        self.service.exited().map_or(Ok(()), Err)
    }
}

fn redis(port: u16, cpus: &str) -> Result<Process, String> {
    let child = Command::new("taskset")
        .args(["-c", cpus, REDIS_SERVER])
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args(["--dir", &std::env::temp_dir().display().to_string()])
        .args(["--loglevel", "warning"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("{REDIS_SERVER} (run `cargo xtask setup`): {e}"))?;
    Ok(Process {
        name: "redis-server",
        child,
    })
}

fn service(binary: &Path, redis_url: &str, port: u16, cpus: &str) -> Result<Process, String> {
    let child = Command::new("taskset")
        .args(["-c", cpus])
        .arg(binary)
        .args(["--redis", redis_url, "--listen", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    Ok(Process {
        name: "tollgate-ratelimit",
        child,
    })
}

/// Starts a process on a free port until it is ready (a few tries).
fn start_ready(
    spawn: impl Fn(u16) -> Result<Process, String>,
    ready: fn(u16) -> Result<(), String>,
) -> Result<(Process, u16), String> {
    let mut last = String::new();
    for _ in 0..TRIES {
        let port = free_port()?;
        let mut process = spawn(port)?;
        match wait_ready(&mut process, port, ready) {
            Ok(()) => return Ok((process, port)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn wait_ready(process: &mut Process, port: u16, ready: fn(u16) -> Result<(), String>) -> Result<(), String> {
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        if let Some(exited) = process.exited() {
            return Err(exited);
        }
        match ready(port) {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(format!(
                    "{} on port {port} not ready within {READY_WITHIN:?}: {e}",
                    process.name
                ))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("free port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn connect(port: u16) -> Result<TcpStream, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(|e| format!("{addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

fn accepts(port: u16) -> Result<(), String> {
    connect(port).map(drop)
}

fn ping_redis(port: u16) -> Result<(), String> {
    let mut stream = connect(port)?;
    stream.write_all(b"PING\r\n").map_err(|e| e.to_string())?;
    let mut answer = [0u8; 7];
    stream.read_exact(&mut answer).map_err(|e| e.to_string())?;
    if &answer == b"+PONG\r\n" {
        Ok(())
    } else {
        Err(format!("PING answered {:?}", String::from_utf8_lossy(&answer)))
    }
}
