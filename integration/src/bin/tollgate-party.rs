//! The test parties as one small binary, for the party image:
//! `tollgate-party echo [PORT | ADDRESS:PORT]` answers with what it received (the echo
//! upstream); `tollgate-party jwks [PORT]` serves a key set that
//! `PUT /_party/keys` replaces, and `GET /_party/hits` says how many key-set
//! requests it answered (`/_party/...` requests are not counted).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tollgate_integration::server::{Received, Server};
use tollgate_integration::Echo;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let role = args.first().map(String::as_str).unwrap_or_default();
    // PORT (all of the container's addresses) or ADDRESS:PORT.
    let port = args.get(1).map(String::as_str).unwrap_or("8080");
    let bind = if port.contains(':') {
        port.to_string()
    } else {
        format!("0.0.0.0:{port}")
    };
    let started = match role {
        "echo" => Echo::start_on(&bind).map(|e| Box::new(e) as Box<dyn Send>),
        "jwks" => jwks(&bind).map(|s| Box::new(s) as Box<dyn Send>),
        _ => {
            eprintln!("usage: tollgate-party echo|jwks [PORT | ADDRESS:PORT]");
            std::process::exit(2);
        }
    };
    match started {
        Ok(_server) => {
            println!("tollgate-party {role} listening on {bind}");
            loop {
                std::thread::park();
            }
        }
        Err(e) => {
            eprintln!("tollgate-party {role}: cannot bind {bind}: {e}");
            std::process::exit(1);
        }
    }
}

fn jwks(bind: &str) -> std::io::Result<Server> {
    let keys = Arc::new(Mutex::new(String::from(r#"{"keys":[]}"#)));
    let hits = Arc::new(AtomicUsize::new(0));
    Server::start(bind, move |r: &Received| match (r.method.as_str(), r.path.as_str()) {
        ("PUT", "/_party/keys") => {
            if let Ok(mut keys) = keys.lock() {
                *keys = String::from_utf8_lossy(&r.body).into_owned();
            }
            (200, "{}".to_string())
        }
        ("GET", "/_party/hits") => (200, hits.load(Ordering::SeqCst).to_string()),
        (_, path) if path.starts_with("/_party/") => (200, "{}".to_string()),
        _ => {
            hits.fetch_add(1, Ordering::SeqCst);
            (200, keys.lock().map(|k| k.clone()).unwrap_or_default())
        }
    })
}
