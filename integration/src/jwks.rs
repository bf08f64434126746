//! A JWKS server: answers every GET with the current key set, counts the
//! requests, can change its keys, and stops when dropped.

use crate::http::{read_body, read_head};
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub struct JwksServer {
    addr: SocketAddr,
    body: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    /// Open connections, shut when the server stops (Envoy pools them).
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl JwksServer {
    pub fn start(jwks: &str) -> JwksServer {
        let listener = match TcpListener::bind("127.0.0.1:0") {
            Ok(l) => l,
            Err(e) => panic!("JWKS server could not bind: {e}"),
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => panic!("JWKS server address: {e}"),
        };
        let body = Arc::new(Mutex::new(jwks.to_string()));
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (b, h, s, c) = (body.clone(), hits.clone(), stop.clone(), conns.clone());
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    if let (Ok(copy), Ok(mut open)) = (conn.try_clone(), c.lock()) {
                        open.push(copy);
                    }
                    let (b, h) = (b.clone(), h.clone());
                    std::thread::spawn(move || serve(conn, &b, &h));
                }
            }
        });
        JwksServer {
            addr,
            body,
            hits,
            stop,
            accept: Some(accept),
            conns,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Serves another key set from now on.
    pub fn set(&self, jwks: &str) {
        if let Ok(mut body) = self.body.lock() {
            *body = jwks.to_string();
        }
    }

    /// Requests answered so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
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

fn serve(conn: TcpStream, body: &Mutex<String>, hits: &AtomicUsize) {
    let Ok(mut writer) = conn.try_clone() else { return };
    let mut reader = BufReader::new(conn);
    while let Ok((_, headers)) = read_head(&mut reader) {
        if read_body(&mut reader, &headers, false).is_err() {
            return;
        }
        hits.fetch_add(1, Ordering::SeqCst);
        let jwks = body.lock().map(|b| b.clone()).unwrap_or_default();
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{jwks}",
            jwks.len()
        );
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}
