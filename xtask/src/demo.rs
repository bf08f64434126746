//! `cargo xtask demo`: Envoy with Tollgate and the example policy on
//! 127.0.0.1:10000 in front of an echo upstream, plus requests to try.

use crate::render::{self, DEMO_ADMIN_PORT, DEMO_BOOTSTRAP, DEMO_PORT, DEMO_UPSTREAM_PORT};
use crate::setup;
use crate::util::{root, step};
use serde_json::Value;
use tollgate_integration::{Echo, Envoy, Request, Response};

struct Example {
    what: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    status: u16,
    /// `reason` of the JSON error body, for denials.
    reason: Option<&'static str>,
    /// Headers the application must see, for requests let through.
    upstream: &'static [(&'static str, &'static str)],
}

const EXAMPLES: &[Example] = &[
    Example {
        what: "tenant from the header, normalized; tier added for routing",
        path: "/api/datahub/entities",
        headers: &[("x-tenant-id", "std-001")],
        status: 200,
        reason: None,
        upstream: &[("x-tenant-id", "STD-001"), ("x-tenant-tier", "premium")],
    },
    Example {
        what: "a client-sent tier never reaches the application",
        path: "/api/datahub/entities",
        headers: &[("x-tenant-id", "ACME"), ("x-tenant-tier", "gold")],
        status: 200,
        reason: None,
        upstream: &[("x-tenant-id", "ACME"), ("x-tenant-tier", "standard")],
    },
    Example {
        what: "tenant from the host name",
        path: "/api/mlflow/runs",
        headers: &[("host", "std-001.tenants.example.com")],
        status: 200,
        reason: None,
        upstream: &[("x-tenant-id", "STD-001")],
    },
    Example {
        what: "tenant from the path prefix; routed as /api/datahub",
        path: "/t/NED-001/api/datahub/entities",
        headers: &[],
        status: 200,
        reason: None,
        upstream: &[("x-tenant-id", "NED-001"), ("x-tenant-tier", "standard")],
    },
    Example {
        what: "no tenant on a route that needs one",
        path: "/api/datahub/entities",
        headers: &[],
        status: 400,
        reason: Some("tenant_required"),
        upstream: &[],
    },
    Example {
        what: "no tenant on trino, which answers 401",
        path: "/api/trino/v1/statement",
        headers: &[],
        status: 401,
        reason: Some("tenant_required"),
        upstream: &[],
    },
    Example {
        what: "unknown tenant",
        path: "/api/datahub/entities",
        headers: &[("x-tenant-id", "GLOBEX")],
        status: 403,
        reason: Some("tenant_unknown"),
        upstream: &[],
    },
    Example {
        what: "suspended tenant",
        path: "/api/datahub/entities",
        headers: &[("x-tenant-id", "OLD-001")],
        status: 403,
        reason: Some("tenant_suspended"),
        upstream: &[],
    },
    Example {
        what: "route the tenant may not use",
        path: "/api/trino/v1/statement",
        headers: &[("x-tenant-id", "NED-001")],
        status: 403,
        reason: Some("tenant_route_forbidden"),
        upstream: &[],
    },
    Example {
        what: "dot segments cannot dodge the route rule",
        path: "/api/superset/../trino/v1/statement",
        headers: &[("x-tenant-id", "NED-001")],
        status: 403,
        reason: Some("tenant_route_forbidden"),
        upstream: &[],
    },
    Example {
        what: "host and header disagree",
        path: "/api/datahub/entities",
        headers: &[("host", "std-001.tenants.example.com"), ("x-tenant-id", "NED-001")],
        status: 403,
        reason: Some("tenant_mismatch"),
        upstream: &[],
    },
    Example {
        what: "malformed tenant id",
        path: "/api/datahub/entities",
        headers: &[("x-tenant-id", "../admin")],
        status: 400,
        reason: Some("tenant_invalid"),
        upstream: &[],
    },
    Example {
        what: "shadow mode: would be refused, goes through and is counted",
        path: "/api/iceberg/tables",
        headers: &[],
        status: 200,
        reason: None,
        upstream: &[],
    },
];

impl Example {
    fn curl(&self) -> String {
        let headers: String = self.headers.iter().map(|(k, v)| format!(" -H '{k}: {v}'")).collect();
        format!(
            "curl -s --path-as-is{headers} http://127.0.0.1:{DEMO_PORT}{}",
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

    fn request(&self) -> Request {
        self.headers
            .iter()
            .fold(Request::get(self.path), |r, (k, v)| r.header(k, v))
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
    let seen: Vec<&Value> = echo["headers"]
        .as_array()
        .map(|all| all.iter().filter(|h| h[0] == name).map(|h| &h[1]).collect())
        .unwrap_or_default();
    seen.len() == 1 && seen.first().is_some_and(|v| *v == value)
}

pub fn run(check: bool) -> Result<(), String> {
    setup::all()?;
    step("build tollgate.wasm", setup::build_wasm)?;
    step("render", || render::run(&[]))?;
    let echo = Echo::start_on(&format!("127.0.0.1:{DEMO_UPSTREAM_PORT}"))
        .map_err(|e| format!("echo upstream on port {DEMO_UPSTREAM_PORT}: {e} (is a demo already running?)"))?;
    let text = std::fs::read_to_string(root().join(DEMO_BOOTSTRAP)).map_err(|e| e.to_string())?;
    let bootstrap: Value = serde_yaml_ng::from_str(&text).map_err(|e| e.to_string())?;
    let envoy = Envoy::try_start(&bootstrap).map_err(|f| format!("Envoy did not start: {}\n{}", f.reason, f.log))?;
    println!("\nTollgate demo: Envoy 1.40 (pid {}) on http://127.0.0.1:{DEMO_PORT}, admin http://127.0.0.1:{DEMO_ADMIN_PORT}, echo upstream on {}", envoy.pid(), echo.addr());
    println!(
        "policy: {}; Envoy log: {}\n",
        render::POLICY,
        envoy.log_path().display()
    );
    let mut failures = 0;
    for example in EXAMPLES {
        println!("# {}\n{}\n#   -> {}", example.what, example.curl(), example.expected());
        if check {
            let outcome = example.request().send(envoy.addr()).and_then(|r| example.check(&r));
            match outcome {
                Ok(()) => println!("#   checked: ok"),
                Err(e) => {
                    failures += 1;
                    println!("#   checked: FAILED: {e}");
                }
            }
        }
        println!();
    }
    println!("counters: curl -s http://127.0.0.1:{DEMO_ADMIN_PORT}/stats | grep tollgate");
    if check {
        println!("{} passed, {failures} failed", EXAMPLES.len() - failures);
        return if failures == 0 {
            Ok(())
        } else {
            Err(format!("{failures} demo example(s) gave another answer"))
        };
    }
    wait_for_ctrl_c()?;
    println!("\nstopping Envoy (pid {})", envoy.pid());
    drop(envoy);
    drop(echo);
    Ok(())
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
