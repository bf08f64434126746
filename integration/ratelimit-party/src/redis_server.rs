//! Debian's `redis-server` as a child process on a free loopback port, with
//! no persistence (`--save "" --appendonly no`: nothing touches the disk),
//! killed by PID when dropped.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's `redis-server` package puts the server.
pub const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// How long a starting Redis may take to answer `PING`.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// A running `redis-server`; killed (and waited for) on drop.
pub struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    /// Starts one and returns once it answered `PING`; panics if it cannot.
    pub fn start() -> Redis {
        match Redis::try_start() {
            Ok(redis) => redis,
            Err(e) => panic!("{e}"),
        }
    }

    /// Starts one on a free 127.0.0.1 port and returns once it answered
    /// `PING`. The port is picked by binding port 0 and closing it; should
    /// another process take it in between, Redis exits and another port is
    /// tried (three times).
    pub fn try_start() -> Result<Redis, String> {
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port()?;
            let child = Command::new(REDIS_SERVER)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                // No disk: the working directory is never written to.
                .args(["--dir", &std::env::temp_dir().display().to_string()])
                .args(["--loglevel", "warning"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("{REDIS_SERVER} (apt-get install redis-server, or `cargo xtask setup`): {e}"))?;
            let mut redis = Redis { child, port };
            match redis.wait_ready() {
                Ok(()) => return Ok(redis),
                Err(e) => last = e,
            }
        }
        Err(format!("redis-server did not start: {last}"))
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_WITHIN;
        let mut last = String::from("not asked yet");
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("redis-server on port {} exited: {status}", self.port));
            }
            match ping(self.addr()) {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "redis-server on port {} did not answer PING within {READY_WITHIN:?}: {last}",
            self.port
        ))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `redis://127.0.0.1:PORT`, what [`crate::Service::start`] takes.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the process (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) -> Result<(), String> {
        self.signal("STOP")
    }

    /// Resumes a paused process (SIGCONT).
    pub fn resume(&self) -> Result<(), String> {
        self.signal("CONT")
    }

    fn signal(&self, signal: &str) -> Result<(), String> {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .map_err(|e| format!("kill -{signal} {}: {e}", self.pid()))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill -{signal} {}: {status}", self.pid()))
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        // SIGKILL ends a paused (SIGSTOPped) process too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("local_addr: {e}"))
}

/// Speaks RESP to `addr`: sends `PING`, expects `+PONG` (one attempt, each
/// step bounded by one second). Used for readiness, natively and of a Redis
/// container's published port.
pub fn ping(addr: SocketAddr) -> Result<(), String> {
    let limit = Duration::from_secs(1);
    let mut stream = TcpStream::connect_timeout(&addr, limit).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(limit))
        .and_then(|()| stream.set_write_timeout(Some(limit)))
        .map_err(|e| format!("{addr}: {e}"))?;
    stream
        .write_all(b"*1\r\n$4\r\nPING\r\n")
        .map_err(|e| format!("PING {addr}: {e}"))?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 64];
    while !answer.ends_with(b"\r\n") {
        let n = stream.read(&mut buf).map_err(|e| format!("PING {addr}: {e}"))?;
        if n == 0 {
            break;
        }
        answer.extend(buf.iter().take(n));
    }
    if answer == b"+PONG\r\n" {
        Ok(())
    } else {
        Err(format!("PING {addr}: answered {:?}", String::from_utf8_lossy(&answer)))
    }
}
