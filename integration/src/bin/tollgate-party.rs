//! The test parties as one small binary, for the party image:
//! `tollgate-party echo [PORT | ADDRESS:PORT]` answers with what it received (the echo
//! upstream); `tollgate-party jwks [PORT]` serves a key set that
//! `PUT /_party/keys` replaces, and `GET /_party/hits` says how many key-set
//! requests it answered (`/_party/...` requests are not counted);
//! `tollgate-party sink [PORT]` is an audit sink in a container (the
//! container outage tests pause and disconnect it): it answers 200 to each
//! JSON lines batch POSTed to `/events` and remembers its events'
//! `event_id`s, answers 400 to anything else (counted), and `GET
//! /_party/events` says `{"batches", "bad", "ids"}`.

use serde_json::{json, Value};
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
        "sink" => sink(&bind).map(|s| Box::new(s) as Box<dyn Send>),
        _ => {
            eprintln!("usage: tollgate-party echo|jwks|sink [PORT | ADDRESS:PORT]");
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

/// What the sink received: accepted batches, refused requests, event ids
/// in arrival order (repeats kept: a batch sent again shows twice).
#[derive(Default)]
struct Delivered {
    batches: usize,
    bad: usize,
    ids: Vec<String>,
}

fn sink(bind: &str) -> std::io::Result<Server> {
    let seen = Arc::new(Mutex::new(Delivered::default()));
    Server::start(bind, move |r: &Received| {
        // Parsed before the lock: a large batch does not hold up a reader.
        let batch = (r.method == "POST" && r.path == "/events").then(|| event_ids(r));
        let Ok(mut seen) = seen.lock() else {
            return (500, "{}".to_string());
        };
        match (r.method.as_str(), r.path.as_str(), batch) {
            ("GET", "/_party/events", _) => (
                200,
                json!({"batches": seen.batches, "bad": seen.bad, "ids": seen.ids}).to_string(),
            ),
            (_, path, _) if path.starts_with("/_party/") => (200, "{}".to_string()),
            (_, _, Some(Some(ids))) => {
                seen.batches += 1;
                seen.ids.extend(ids);
                (200, "{}".to_string())
            }
            _ => {
                seen.bad += 1;
                (400, "{}".to_string())
            }
        }
    })
}

/// The `event_id` of each line of a JSON lines batch; `None` when the
/// content type is not `application/x-ndjson`, the body does not end with
/// a newline, or a line is not an object with a string `event_id`.
fn event_ids(r: &Received) -> Option<Vec<String>> {
    let content_type = tollgate_integration::http::header(&r.headers, "content-type");
    if content_type != Some(tollgate_integration::sink::JSONL_CONTENT_TYPE) {
        return None;
    }
    let text = std::str::from_utf8(&r.body).ok().filter(|t| t.ends_with('\n'))?;
    text.lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).ok()?;
            event.get("event_id")?.as_str().map(str::to_string)
        })
        .collect()
}
