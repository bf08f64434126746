//! An upstream that answers every request with what it received, as JSON:
//! `{"method", "path", "headers": [[name, value], ...], "body"}`.

use crate::http::{read_body, read_head};
use serde_json::json;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

pub struct Echo {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Echo {
    /// Binds `bind` (use `127.0.0.1:0` for a free port) and serves until dropped.
    pub fn start_on(bind: &str) -> std::io::Result<Echo> {
        let listener = TcpListener::bind(bind)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    std::thread::spawn(move || serve(conn));
                }
            }
        });
        Ok(Echo {
            addr,
            stop,
            accept: Some(accept),
        })
    }

    pub fn start() -> Echo {
        match Echo::start_on("127.0.0.1:0") {
            Ok(echo) => echo,
            Err(e) => panic!("echo upstream could not bind: {e}"),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
    }
}

/// Serves one keep-alive connection until the peer closes it.
fn serve(conn: TcpStream) {
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    while let Ok((start, headers)) = read_head(&mut reader) {
        let Ok(body) = read_body(&mut reader, &headers, false) else {
            return;
        };
        let mut parts = start.split(' ');
        let answer = json!({
            "method": parts.next().unwrap_or_default(),
            "path": parts.next().unwrap_or_default(),
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        })
        .to_string();
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}
