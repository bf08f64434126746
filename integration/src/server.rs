//! A small HTTP/1.1 server on a given address that fixtures build on: each request
//! goes to a handler; connections are kept alive; dropping the server stops
//! it and shuts the connections still open (Envoy pools them).

use crate::http::{read_body, read_head};
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A request as the server read it.
pub struct Received {
    pub method: String,
    pub path: String,
    /// Names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Status and JSON body of an answer; status `CLOSE` closes the connection
/// without answering (a sink that hung up).
pub type Answer = (u16, String);

/// The status that makes the server close the connection instead of answering.
pub const CLOSE: u16 = 0;

pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Server {
    pub fn start<H>(bind: &str, handler: H) -> std::io::Result<Server>
    where
        H: Fn(&Received) -> Answer + Send + Sync + 'static,
    {
        let listener = TcpListener::bind(bind)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(handler);
        let (stopping, open) = (stop.clone(), conns.clone());
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                if let (Ok(copy), Ok(mut open)) = (conn.try_clone(), open.lock()) {
                    open.push(copy);
                }
                let handler = handler.clone();
                std::thread::spawn(move || serve(conn, handler.as_ref()));
            }
        });
        Ok(Server {
            addr,
            stop,
            accept: Some(accept),
            conns,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
        if let Ok(open) = self.conns.lock() {
            for conn in open.iter() {
                let _ = conn.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// Serves one keep-alive connection until the peer closes it.
fn serve(conn: TcpStream, handler: &(dyn Fn(&Received) -> Answer + Send + Sync)) {
    let Ok(mut writer) = conn.try_clone() else { return };
    let mut reader = BufReader::new(conn);
    while let Ok((start, headers)) = read_head(&mut reader) {
        let Ok(body) = read_body(&mut reader, &headers, false) else {
            return;
        };
        let mut parts = start.split(' ');
        let request = Received {
            method: parts.next().unwrap_or_default().to_string(),
            path: parts.next().unwrap_or_default().to_string(),
            headers,
            body,
        };
        let (status, answer) = handler(&request);
        if status == CLOSE {
            let _ = writer.shutdown(std::net::Shutdown::Both);
            return;
        }
        let reply = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}
