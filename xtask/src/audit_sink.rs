//! The demo's audit sink: a Kafka REST Proxy v2 stand-in on a local port
//! (`POST /topics/<topic>`, `application/vnd.kafka.json.v2+json`), which
//! also takes JSON lines and OTLP bodies at any other path, and appends
//! each event it receives to a file as one JSON line, where the demo's
//! user reads them.

use serde_json::{json, Value};
use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tollgate_integration::server::{Answer, Received, Server};

/// Kafka REST's content type for JSON records.
const KAFKA_JSON: &str = "application/vnd.kafka.json.v2+json";

pub struct Sink {
    server: Server,
    file: PathBuf,
}

/// The file, and the next Kafka offset to answer with.
struct Output {
    file: File,
    offset: u64,
}

impl Sink {
    /// Listens on `bind` and writes to `file`, emptied first.
    pub fn start(bind: &str, file: &Path) -> Result<Sink, String> {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let out = File::create(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let out = Arc::new(Mutex::new(Output { file: out, offset: 0 }));
        let server = Server::start(bind, move |r: &Received| answer(r, &out))
            .map_err(|e| format!("audit sink on {bind}: {e}"))?;
        Ok(Sink {
            server,
            file: file.to_path_buf(),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Every line written so far, parsed.
    pub fn lines(&self) -> Result<Vec<Value>, String> {
        let text = std::fs::read_to_string(&self.file).map_err(|e| format!("{}: {e}", self.file.display()))?;
        text.lines()
            .map(|l| serde_json::from_str(l).map_err(|e| format!("{}: {e}: {l}", self.file.display())))
            .collect()
    }
}

fn answer(request: &Received, out: &Mutex<Output>) -> Answer {
    let content_type = request
        .headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map_or("", |(_, v)| v.as_str());
    let lines = match lines_of(&request.method, &request.path, content_type, &request.body) {
        Ok(lines) => lines,
        Err((status, why)) => return (status, json!({"error_code": status, "message": why}).to_string()),
    };
    let Ok(mut out) = out.lock() else {
        return (500, json!({"error_code": 500, "message": "sink poisoned"}).to_string());
    };
    let first = out.offset;
    for line in &lines {
        if let Err(e) = writeln!(out.file, "{line}") {
            return (500, json!({"error_code": 500, "message": e.to_string()}).to_string());
        }
    }
    out.offset += lines.len() as u64;
    let offsets: Vec<Value> = (first..out.offset)
        .map(|offset| json!({"partition": 0, "offset": offset, "error_code": null, "error": null}))
        .collect();
    (
        200,
        json!({"key_schema_id": null, "value_schema_id": null, "offsets": offsets}).to_string(),
    )
}

/// One line per event: a Kafka REST record as `{"topic", "key", "value"}`,
/// each line of a JSON lines body as it is, any other JSON body (OTLP)
/// whole. `Err`: the status and why, as Kafka REST would answer.
fn lines_of(method: &str, path: &str, content_type: &str, body: &[u8]) -> Result<Vec<String>, (u16, String)> {
    if method != "POST" {
        return Err((405, format!("{method}: POST only")));
    }
    if let Some(topic) = path.split_once("/topics/").map(|(_, t)| t) {
        if content_type != KAFKA_JSON {
            return Err((415, format!("content-type '{content_type}', not {KAFKA_JSON}")));
        }
        return kafka_records(topic, body).map_err(|why| (422, why));
    }
    let text = std::str::from_utf8(body).map_err(|e| (400, e.to_string()))?;
    if let Ok(whole) = serde_json::from_str::<Value>(text) {
        return Ok(vec![whole.to_string()]);
    }
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let event: Value = serde_json::from_str(l).map_err(|e| (400, format!("{e}: {l}")))?;
            Ok(event.to_string())
        })
        .collect()
}

/// `{"records": [{"key": ..., "value": ...}]}` to a topic.
fn kafka_records(topic: &str, body: &[u8]) -> Result<Vec<String>, String> {
    if topic.is_empty() || topic.contains('/') {
        return Err(format!("'{topic}' is not a topic"));
    }
    let body: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let records = body["records"].as_array().ok_or("no records")?;
    if records.is_empty() {
        return Err("no records".into());
    }
    let lines = records
        .iter()
        .map(|r| json!({"topic": topic, "key": r["key"], "value": r["value"]}).to_string())
        .collect();
    Ok(lines)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn kafka_rest_records_become_one_line_each_with_their_topic() {
        let body =
            br#"{"records":[{"key":"STD-001","value":{"event_type":"data_access"}},{"key":null,"value":{"n":2}}]}"#;
        let lines = lines_of("POST", "/topics/audit-data-access", KAFKA_JSON, body).unwrap();
        let parsed: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(
            parsed,
            [
                json!({"topic": "audit-data-access", "key": "STD-001", "value": {"event_type": "data_access"}}),
                json!({"topic": "audit-data-access", "key": null, "value": {"n": 2}}),
            ]
        );
    }

    #[test]
    fn what_kafka_rest_refuses_is_refused() {
        let body = br#"{"records":[{"value":{}}]}"#;
        assert_eq!(lines_of("GET", "/topics/t", KAFKA_JSON, body).unwrap_err().0, 405);
        assert_eq!(
            lines_of("POST", "/topics/t", "application/json", body).unwrap_err().0,
            415
        );
        assert_eq!(lines_of("POST", "/topics/t", KAFKA_JSON, b"{}").unwrap_err().0, 422);
        assert_eq!(lines_of("POST", "/topics/", KAFKA_JSON, body).unwrap_err().0, 422);
    }

    #[test]
    fn json_lines_stay_lines_and_other_json_is_one() {
        let lines = lines_of("POST", "/events", "application/x-ndjson", b"{\"a\":1}\n{\"b\":2}\n").unwrap();
        assert_eq!(lines, [r#"{"a":1}"#, r#"{"b":2}"#]);
        let otlp = lines_of("POST", "/v1/logs", "application/json", br#"{"resourceLogs": []}"#).unwrap();
        assert_eq!(otlp, [r#"{"resourceLogs":[]}"#]);
        assert_eq!(lines_of("POST", "/events", "", b"not json").unwrap_err().0, 400);
    }

    #[test]
    fn the_sink_appends_to_its_file_and_answers_with_offsets() {
        let file = std::env::temp_dir().join(format!("tollgate-sink-{}.jsonl", std::process::id()));
        let sink = Sink::start("127.0.0.1:0", &file).unwrap();
        let mut request = tollgate_integration::Request::get("/topics/audit-api-calls")
            .method("POST")
            .header("content-type", KAFKA_JSON);
        request.body = br#"{"records":[{"key":"a","value":{"n":1}},{"key":"b","value":{"n":2}}]}"#.to_vec();
        let first = request.send(sink.addr()).unwrap();
        assert_eq!(first.status, 200, "{}", first.text());
        let second = request.send(sink.addr()).unwrap();
        assert_eq!(second.json()["offsets"][1]["offset"], 3);
        let keys: Vec<Value> = sink.lines().unwrap().iter().map(|l| l["key"].clone()).collect();
        assert_eq!(keys, [json!("a"), json!("b"), json!("a"), json!("b")]);
        drop(sink);
        std::fs::remove_file(&file).unwrap();
    }
}
