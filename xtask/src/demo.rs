//! `cargo xtask demo`: Envoy with Tollgate and the example policy on
//! 127.0.0.1:10000 in front of an echo upstream, plus requests to try; the
//! audit events go to Kafka (a Tansu broker behind a Kafka REST front),
//! where `tollgate audit tail` shows them.

mod audit;
mod prometheus;

use crate::render::{self, DEMO_ADMIN_PORT, DEMO_BOOTSTRAP, DEMO_PORT, DEMO_UPSTREAM_PORT};
use crate::setup;
use crate::util::{root, step};
use audit::Kafka;
use serde_json::Value;
use std::process::Command;
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

/// The bootstrap's sink cluster sent to where the sink listens.
pub(crate) fn point_sink(bootstrap: &mut Value, policy: &Value, addr: std::net::SocketAddr) -> Result<(), String> {
    point_sink_to(bootstrap, policy, &addr.ip().to_string(), addr.port())
}

/// The bootstrap's sink cluster sent to `host:port` (an address, or a name
/// Envoy resolves).
fn point_sink_to(bootstrap: &mut Value, policy: &Value, host: &str, port: u16) -> Result<(), String> {
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
    if host.parse::<std::net::IpAddr>().is_err() {
        // A container's name on the demo's network (as docker::on_network).
        cluster["type"] = "STRICT_DNS".into();
        cluster["dns_lookup_family"] = "V4_ONLY".into();
    }
    let socket = cluster
        .pointer_mut("/load_assignment/endpoints/0/lb_endpoints/0/endpoint/address/socket_address")
        .ok_or_else(|| format!("cluster {name} has no address"))?;
    socket["address"] = host.into();
    socket["port_value"] = port.into();
    Ok(())
}

/// Where the events go, as the demo prints it.
fn print_sink(policy: &Value, kafka: Option<&Kafka>) {
    match kafka {
        Some(kafka) => println!("{}", kafka.describe()),
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
    let kafka = Kafka::start(&policy, check, None)?;
    let text = std::fs::read_to_string(root().join(DEMO_BOOTSTRAP)).map_err(|e| e.to_string())?;
    let mut bootstrap: Value = serde_yaml_ng::from_str(&text).map_err(|e| e.to_string())?;
    if check {
        use_free_ports(&mut bootstrap, echo.port())?;
    }
    if let Some(kafka) = &kafka {
        kafka.point_sink(&mut bootstrap, &policy)?;
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
    print_sink(&policy, kafka.as_ref());
    let scraper = prometheus::start(envoy.admin_addr(), check)?;
    println!();
    let addr = if check {
        envoy.addr().to_string()
    } else {
        format!("127.0.0.1:{DEMO_PORT}")
    };
    examples(&addr, check, &policy, kafka.as_ref())?;
    if let Some(scraper) = &scraper {
        prometheus::print(scraper);
        if check {
            let answered = prometheus::check(scraper)?;
            println!("# Prometheus: {answered}; checked: ok");
        }
    }
    if check {
        return Ok(());
    }
    wait_for_ctrl_c()?;
    println!("\nstopping Envoy (pid {}), Prometheus and Kafka", envoy.pid());
    drop(scraper);
    drop(envoy);
    drop(echo);
    drop(kafka);
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
    // The broker and its front in containers on the demo's network: Envoy
    // reaches the front by name, the host the broker on 127.0.0.1.
    let kafka = Kafka::start(&policy, check, Some(&network.name))?;
    let text = std::fs::read_to_string(root().join(DEMO_BOOTSTRAP)).map_err(|e| e.to_string())?;
    let mut bootstrap: Value = serde_yaml_ng::from_str(&text).map_err(|e| e.to_string())?;
    docker::on_network(&mut bootstrap, &[("upstream", "echo", docker::PARTY_PORT)])?;
    if let Some(kafka) = &kafka {
        kafka.point_sink(&mut bootstrap, &policy)?;
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
    print_sink(&policy, kafka.as_ref());
    println!();
    let result = examples(&envoy.addr().to_string(), check, &policy, kafka.as_ref());
    if result.is_err() {
        let kafka_logs = kafka.as_ref().map(Kafka::logs).unwrap_or_default();
        println!(
            "--- envoy log ---\n{}\n--- echo log ---\n{}\n{kafka_logs}",
            envoy.log(),
            echo.logs()
        );
    }
    result?;
    if !check {
        wait_for_ctrl_c()?;
        println!("\nstopping the containers");
    }
    // Envoy, the echo and Kafka before their network.
    drop(envoy);
    drop(echo);
    drop(kafka);
    drop(network);
    Ok(())
}

/// Prints the tokens and the example requests; with `check`, runs each
/// printed line and compares, then checks the audit events they gave.
fn examples(addr: &str, check: bool, policy: &Value, kafka: Option<&Kafka>) -> Result<(), String> {
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
    if let Some(kafka) = kafka {
        println!("# the audit trail of these requests, from Kafka (tollgate audit tail; `cargo install --path cli` gives `tollgate`):");
        println!("{}", kafka.tail_command());
    }
    if check {
        let mut checks = EXAMPLES.len();
        if let Some(kafka) = kafka {
            checks += 1;
            match audit::check_events(kafka, &explained, &tokens) {
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
