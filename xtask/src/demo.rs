//! `cargo xtask demo`: Envoy with Tollgate and the example policy on
//! 127.0.0.1:10000 in front of an echo upstream, plus requests to try; the
//! audit events go to a local sink that writes them to a file.

use crate::audit_sink::Sink;
use crate::render::{self, DEMO_ADMIN_PORT, DEMO_BOOTSTRAP, DEMO_PORT, DEMO_SINK_PORT, DEMO_UPSTREAM_PORT};
use crate::setup;
use crate::util::{root, step};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};
use tollgate_cli::demo::{self, Example, EXAMPLES, TOKENS};
use tollgate_cli::explain::{explain, Request};
use tollgate_integration::docker::{self, Container, Network};
use tollgate_integration::{Echo, Envoy, Response};

/// What the demo does with an example (the list lives in `tollgate_cli::demo`).
trait Demo {
    fn curl(&self, addr: &str) -> String;
    fn expected(&self) -> String;
    fn run_printed(&self, line: &str, tokens: &[(String, String)]) -> Result<Response, String>;
    fn check(&self, response: &Response) -> Result<(), String>;
}

impl Demo for Example {
    /// The line printed for the user, and run as is by `--check`: every
    /// method, token and header the request needs.
    fn curl(&self, addr: &str) -> String {
        let method = if self.method == "GET" {
            String::new()
        } else {
            format!(" -X {}", self.method)
        };
        let token = self
            .token
            .map(|var| format!(" -H \"authorization: Bearer ${var}\""))
            .unwrap_or_default();
        let headers: String = self.headers.iter().map(|(k, v)| format!(" -H '{k}: {v}'")).collect();
        format!(
            "curl -s --path-as-is{method}{token}{headers} 'http://{addr}{}'",
            self.path
        )
    }

    fn expected(&self) -> String {
        match self.reason {
            Some(reason) => format!("{} {{\"reason\": \"{reason}\", ...}}", self.status),
            None if self.upstream.is_empty() => format!("{} (echo of the request)", self.status),
            None => {
                let seen: Vec<String> = self.upstream.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("{}; the application sees {}", self.status, seen.join(", "))
            }
        }
    }

    /// Runs the printed line with the real `curl` and the exported tokens.
    fn run_printed(&self, line: &str, tokens: &[(String, String)]) -> Result<Response, String> {
        let output = Command::new("bash")
            .arg("-c")
            .arg(format!("{line} --max-time 10 -w '\\n%{{http_code}}'"))
            .envs(tokens.iter().map(|(var, token)| (var, token)))
            .output()
            .map_err(|e| format!("could not run bash/curl: {e}"))?;
        let out = String::from_utf8_lossy(&output.stdout);
        let (body, code) = out
            .rsplit_once('\n')
            .ok_or_else(|| format!("curl printed no status: {out}"))?;
        let status = code
            .trim()
            .parse()
            .map_err(|_| format!("curl failed: {}", String::from_utf8_lossy(&output.stderr)))?;
        Ok(Response {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        })
    }

    /// `Err` says how the answer differs from the printed one.
    fn check(&self, response: &Response) -> Result<(), String> {
        let body = response.json();
        if response.status != self.status {
            return Err(format!(
                "status {} (want {}): {}",
                response.status,
                self.status,
                response.text()
            ));
        }
        if let Some(reason) = self.reason {
            if body["reason"] != reason {
                return Err(format!("reason {} (want {reason})", body["reason"]));
            }
        }
        for (name, value) in self.upstream {
            if !upstream_saw(&body, name, value) {
                return Err(format!("application did not see {name}: {value}: {}", response.text()));
            }
        }
        Ok(())
    }
}

fn upstream_saw(echo: &Value, name: &str, value: &str) -> bool {
    upstream_values(echo, name) == [value]
}

/// Where the demo's audit sink writes the events it receives.
const EVENTS_FILE: &str = "target/demo/audit-events.jsonl";
/// `--check`'s own file: an interactive demo may be writing the other.
const CHECK_EVENTS_FILE: &str = "target/demo/audit-events.check.jsonl";
/// How long `--check` waits for the events (the policy flushes every second).
const EVENTS_WAIT: Duration = Duration::from_secs(15);

/// The sink for the policy's sink cluster, on `host` (the demo's port, or
/// a free one for `--check`); `None` when the policy calls no sink.
fn start_sink(policy: &Value, host: &str, check: bool) -> Result<Option<Sink>, String> {
    if render::sink_cluster(policy).is_none() {
        return Ok(None);
    }
    let (port, file) = if check {
        (0, CHECK_EVENTS_FILE)
    } else {
        (DEMO_SINK_PORT, EVENTS_FILE)
    };
    let sink = Sink::start(&format!("{host}:{port}"), &root().join(file))
        .map_err(|e| format!("{e} (is a demo already running?)"))?;
    Ok(Some(sink))
}

/// The bootstrap's sink cluster sent to where the sink listens.
pub(crate) fn point_sink(bootstrap: &mut Value, policy: &Value, addr: std::net::SocketAddr) -> Result<(), String> {
    let Some(name) = render::sink_cluster(policy) else {
        return Ok(());
    };
    let clusters = bootstrap
        .pointer_mut("/static_resources/clusters")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| format!("{DEMO_BOOTSTRAP} has no clusters"))?;
    let cluster = clusters
        .iter_mut()
        .find(|c| c["name"] == name.as_str())
        .ok_or_else(|| format!("{DEMO_BOOTSTRAP} has no cluster {name}: run `cargo xtask render`"))?;
    let socket = cluster
        .pointer_mut("/load_assignment/endpoints/0/lb_endpoints/0/endpoint/address/socket_address")
        .ok_or_else(|| format!("cluster {name} has no address"))?;
    socket["address"] = addr.ip().to_string().into();
    socket["port_value"] = addr.port().into();
    Ok(())
}

/// Where to read the events, as the demo prints it.
fn print_sink(policy: &Value, sink: Option<&Sink>) {
    match sink {
        Some(sink) => println!(
            "audit events: {} (one Kafka REST record a line: topic, key, value), written by the demo's sink on {}; \
             the filter sends them every second",
            sink.file().display(),
            sink.addr()
        ),
        None if policy["audit"].is_object() => println!("audit events: in Envoy's log (format log)"),
        None => {}
    }
}

pub fn run(check: bool, in_docker: bool) -> Result<(), String> {
    setup::all()?;
    step("build tollgate.wasm", setup::build_wasm)?;
    step("render", || render::run(false, render::DEFAULT_IMAGE, false))?;
    if in_docker {
        return run_in_docker(check);
    }
    // The check (run by CI) takes free ports; the interactive demo its fixed ones.
    let upstream = if check {
        "127.0.0.1:0".to_string()
    } else {
        format!("127.0.0.1:{DEMO_UPSTREAM_PORT}")
    };
    let echo = Echo::start_on(&upstream)
        .map_err(|e| format!("echo upstream on {upstream}: {e} (is a demo already running?)"))?;
    let policy = tollgate_cli::policy_file::load_policy(&root().join(render::POLICY))?;
    let sink = start_sink(&policy, "127.0.0.1", check)?;
    let text = std::fs::read_to_string(root().join(DEMO_BOOTSTRAP)).map_err(|e| e.to_string())?;
    let mut bootstrap: Value = serde_yaml_ng::from_str(&text).map_err(|e| e.to_string())?;
    if check {
        use_free_ports(&mut bootstrap, echo.port())?;
        if let Some(sink) = &sink {
            point_sink(&mut bootstrap, &policy, sink.addr())?;
        }
    }
    let envoy = Envoy::try_start(&bootstrap).map_err(|f| format!("Envoy did not start: {}\n{}", f.reason, f.log))?;
    let admin = if check {
        "an ephemeral port".to_string()
    } else {
        format!("http://127.0.0.1:{DEMO_ADMIN_PORT}")
    };
    println!(
        "\nTollgate demo: Envoy 1.40 (pid {}) on http://{}, admin {admin}, echo upstream on {}",
        envoy.pid(),
        envoy.addr(),
        echo.addr()
    );
    println!("policy: {}; Envoy log: {}", render::POLICY, envoy.log_path().display());
    print_sink(&policy, sink.as_ref());
    println!();
    let addr = if check {
        envoy.addr().to_string()
    } else {
        format!("127.0.0.1:{DEMO_PORT}")
    };
    examples(&addr, check, &policy, sink.as_ref())?;
    if check {
        return Ok(());
    }
    wait_for_ctrl_c()?;
    println!("\nstopping Envoy (pid {})", envoy.pid());
    drop(envoy);
    drop(echo);
    drop(sink);
    Ok(())
}

/// The same demo with Envoy and the echo upstream in containers (images
/// from `cargo xtask setup`) on a network of their own; Envoy's listener
/// and admin published on 127.0.0.1 (the demo's ports, or free ones for
/// `--check`). Everything is labelled with the run id and removed by id.
fn run_in_docker(check: bool) -> Result<(), String> {
    docker::engine().map_err(|why| format!("demo --docker needs a Docker engine: {why}"))?;
    docker::remove_leftovers()?;
    let network = Network::create()?;
    let echo = Container::party("echo", &network)?;
    let policy = tollgate_cli::policy_file::load_policy(&root().join(render::POLICY))?;
    // The sink writes to a file on this machine, so it runs here, on the
    // host's address on Docker's default bridge, which Envoy's container
    // reaches through its gateway (as the integration tests' parties do).
    let sink = start_sink(&policy, &docker::bridge_gateway()?, check)?;
    let text = std::fs::read_to_string(root().join(DEMO_BOOTSTRAP)).map_err(|e| e.to_string())?;
    let mut bootstrap: Value = serde_yaml_ng::from_str(&text).map_err(|e| e.to_string())?;
    docker::on_network(&mut bootstrap, &[("upstream", "echo", docker::PARTY_PORT)])?;
    if let Some(sink) = &sink {
        point_sink(&mut bootstrap, &policy, sink.addr())?;
    }
    let ports = (!check).then_some((DEMO_PORT, DEMO_ADMIN_PORT));
    let envoy = Envoy::try_start_on_ports(&bootstrap, &network, ports).map_err(|f| {
        format!(
            "Envoy did not start: {}\n{}\n--- echo ---\n{}",
            f.reason,
            f.log,
            echo.logs()
        )
    })?;
    println!(
        "\nTollgate demo in containers: Envoy 1.40 ({}, container {}) on http://{}, admin http://{}, \
         echo upstream ({}, container {}) on network {}",
        docker::envoy_image(),
        envoy.container_id().unwrap_or_default().get(..12).unwrap_or_default(),
        envoy.addr(),
        envoy.admin_addr(),
        docker::PARTY_IMAGE,
        echo.id.get(..12).unwrap_or_default(),
        network.name,
    );
    println!("policy: {}; Envoy log: docker logs of that container", render::POLICY);
    print_sink(&policy, sink.as_ref());
    println!();
    let result = examples(&envoy.addr().to_string(), check, &policy, sink.as_ref());
    if result.is_err() {
        println!("--- envoy log ---\n{}\n--- echo log ---\n{}", envoy.log(), echo.logs());
    }
    result?;
    if !check {
        wait_for_ctrl_c()?;
        println!("\nstopping the containers");
    }
    // Envoy and the echo before their network.
    drop(envoy);
    drop(echo);
    drop(network);
    drop(sink);
    Ok(())
}

/// Prints the tokens and the example requests; with `check`, runs each
/// printed line and compares, then checks the audit events they gave.
fn examples(addr: &str, check: bool, policy: &Value, sink: Option<&Sink>) -> Result<(), String> {
    let tokens = mint_tokens()?;
    println!("# Tokens from the demo IdP keys (tests/fixtures/keys), valid for an hour:");
    for (var, token) in &tokens {
        println!("export {var}={token}");
    }
    println!();
    let mut failures = 0;
    let mut explained = Vec::new();
    for example in EXAMPLES {
        let line = example.curl(addr);
        println!("# {}\n{line}\n#   -> {}", example.what, example.expected());
        if check {
            let outcome = example.run_printed(&line, &tokens).and_then(|r| {
                example.check(&r)?;
                explain_agrees(policy, example, addr, &tokens, &r)
            });
            match outcome {
                Ok(explanation) => {
                    explained.push((example, explanation));
                    println!("#   checked: ok");
                }
                Err(e) => {
                    failures += 1;
                    println!("#   checked: FAILED: {e}");
                }
            }
        }
        println!();
    }
    println!("counters: curl -s http://127.0.0.1:{DEMO_ADMIN_PORT}/stats | grep tollgate");
    if let Some(sink) = sink {
        println!("audit events: tail -f {}", sink.file().display());
    }
    if check {
        let mut checks = EXAMPLES.len();
        if let Some(sink) = sink {
            checks += 1;
            match check_events(sink, &explained, &tokens) {
                Ok(what) => println!("# audit events: {what}; checked: ok"),
                Err(e) => {
                    failures += 1;
                    println!("# audit events: checked: FAILED: {e}");
                }
            }
        }
        println!("{} passed, {failures} failed", checks - failures);
        return if failures == 0 {
            Ok(())
        } else {
            Err(format!("{failures} demo example(s) gave another answer"))
        };
    }
    Ok(())
}

/// `tollgate explain` on the same request gives Envoy's answer: status,
/// reason, and every header it says the filters add, change or remove
/// reaches the application exactly so. Returns the explanation.
fn explain_agrees(
    policy: &Value,
    example: &Example,
    addr: &str,
    tokens: &[(String, String)],
    response: &Response,
) -> Result<Value, String> {
    let token = example
        .token
        .map(|var| tokens.iter().find(|(v, _)| v == var).map(|(_, t)| t.clone()))
        .map(|t| t.ok_or("no such demo token"))
        .transpose()?;
    let request = Request {
        method: example.method.to_string(),
        url: format!("http://{addr}{}", example.path),
        headers: example
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        token,
        ..Request::default()
    };
    let explained = explain(policy, &request)?;
    let answer = &explained["answer"];
    let body = response.json();
    let (status, reason) = match answer["kind"].as_str() {
        Some("local_reply") => (answer["status"].as_u64(), &answer["reason"]),
        Some("forwarded") => (Some(200), &Value::Null),
        other => return Err(format!("explain gives no answer ({other:?})")),
    };
    if status != Some(u64::from(response.status)) {
        return Err(format!("explain says status {status:?}, Envoy {}", response.status));
    }
    if !reason.is_null() && body["reason"] != *reason {
        return Err(format!("explain says reason {reason}, Envoy {}", body["reason"]));
    }
    let upstream = &explained["upstream"];
    let expected = upstream["added"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| (&h[0], &h[1]));
    let changed = upstream["changed"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| (&h[0], &h[2]));
    for (name, value) in expected.chain(changed) {
        let name = name.as_str().unwrap_or_default();
        if upstream_values(&body, name).join(", ") != value.as_str().unwrap_or_default() {
            return Err(format!(
                "explain says the app gets {name}: {value}; Envoy sent {:?}",
                upstream_values(&body, name)
            ));
        }
    }
    for removed in upstream["removed"].as_array().into_iter().flatten() {
        let name = removed[0].as_str().unwrap_or_default();
        if !upstream_values(&body, name).is_empty() {
            return Err(format!("explain says {name} is removed; Envoy sent it"));
        }
    }
    Ok(explained)
}

/// The sink got one event per request the examples sent, as explain
/// describes it (topic, event type, route, key), with the example's
/// method, status and denial: every event explain says is always kept
/// (denials, admin operations, sample 1.0) within `EVENTS_WAIT`, and no
/// other but a sampled route's. No token is in any. Says what arrived.
fn check_events(sink: &Sink, explained: &[(&Example, Value)], tokens: &[(String, String)]) -> Result<String, String> {
    let always = explained.iter().filter(|(_, e)| e["audit"]["kept"] == "always").count();
    let deadline = Instant::now() + EVENTS_WAIT;
    let (lines, matched) = loop {
        let lines = sink.lines()?;
        let (matched, unmatched) = match_events(&lines, explained);
        let missing: Vec<&str> = explained
            .iter()
            .zip(&matched)
            .filter(|((_, e), seen)| e["audit"]["kept"] == "always" && !**seen)
            .map(|((x, _), _)| x.what)
            .collect();
        if let Some(event) = unmatched.first() {
            return Err(format!("an event no example explains: {event}"));
        }
        if missing.is_empty() {
            break (lines, matched);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "after {}s, no event for {} example(s) always kept: {}",
                EVENTS_WAIT.as_secs(),
                missing.len(),
                missing.join("; ")
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut ids: Vec<&str> = lines.iter().filter_map(|l| l["value"]["event_id"].as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() != lines.len() {
        return Err(format!("{} events but {} distinct event_id", lines.len(), ids.len()));
    }
    let text = std::fs::read_to_string(sink.file()).map_err(|e| e.to_string())?;
    if let Some((var, _)) = tokens.iter().find(|(_, token)| text.contains(token.as_str())) {
        return Err(format!("the ${var} token is in {}", sink.file().display()));
    }
    let sampled = matched.iter().filter(|m| **m).count() - always;
    Ok(format!(
        "{} in {} ({always} always kept, {sampled} of {} sampled in), no token in any",
        lines.len(),
        sink.file().display(),
        explained.len() - always
    ))
}

/// Which examples have an event (each event taken once), and the events
/// no example explains.
fn match_events<'l>(lines: &'l [Value], explained: &[(&Example, Value)]) -> (Vec<bool>, Vec<&'l Value>) {
    let mut matched = vec![false; explained.len()];
    let mut unmatched = Vec::new();
    for line in lines {
        let found = explained
            .iter()
            .zip(matched.iter_mut())
            .find(|((example, e), seen)| !**seen && event_of(line, example, e));
        match found {
            Some((_, seen)) => *seen = true,
            None => unmatched.push(line),
        }
    }
    (matched, unmatched)
}

/// A sink line (`{topic, key, value}`) is the event of this example.
fn event_of(line: &Value, example: &Example, explained: &Value) -> bool {
    let (event, audit) = (&line["value"], &explained["audit"]);
    let topic =
        serde_json::from_value::<tollgate_core::audit::EventType>(audit["event_type"].clone()).map(|t| t.topic());
    let denied = example.reason.is_none_or(|reason| {
        event["decisions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["reason"] == reason)
    });
    line["topic"].as_str() == topic.ok()
        && line["key"] == event["tenant"]
        && event["event_type"] == audit["event_type"]
        && event["route"] == audit["route"]
        && event["method"] == example.method
        && event["status"] == example.status
        && denied
}

/// Every value of a header the echo upstream received.
fn upstream_values(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h[0] == name)
        .filter_map(|h| h[1].as_str().map(str::to_string))
        .collect()
}

/// Listener and admin on ports Envoy picks, the upstream on the echo's.
pub(crate) fn use_free_ports(bootstrap: &mut Value, upstream_port: u16) -> Result<(), String> {
    let pointers = [
        ("/admin/address/socket_address/port_value", 0),
        ("/static_resources/listeners/0/address/socket_address/port_value", 0),
        (
            "/static_resources/clusters/0/load_assignment/endpoints/0/lb_endpoints/0/endpoint/address/socket_address/port_value",
            upstream_port,
        ),
    ];
    for (pointer, port) in pointers {
        let slot = bootstrap
            .pointer_mut(pointer)
            .ok_or_else(|| format!("{DEMO_BOOTSTRAP} has no {pointer}"))?;
        *slot = Value::from(port);
    }
    Ok(())
}

/// Tokens shaped like the platform's (seeds: iss, sub, aud, user_id, roles),
/// signed with the fixture key the example policy's JWKS holds.
pub(crate) fn mint_tokens() -> Result<Vec<(String, String)>, String> {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let pem = std::fs::read(root().join(demo::SIGNING_KEY)).map_err(|e| format!("demo key: {e}"))?;
    let key = EncodingKey::from_rsa_pem(&pem).map_err(|e| format!("demo key: {e}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(demo::SIGNING_KID.into());
    TOKENS
        .iter()
        .map(|(var, tenant, roles, scope, expired)| {
            let claims = demo::token_claims(tenant, roles, scope, *expired, now);
            let token = encode(&header, &claims, &key).map_err(|e| e.to_string())?;
            Ok((var.to_string(), token))
        })
        .collect()
}

fn wait_for_ctrl_c() -> Result<(), String> {
    let (tx, rx) = std::sync::mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .map_err(|e| e.to_string())?;
    println!("Ctrl-C stops the demo.");
    rx.recv().map_err(|e| e.to_string())
}
