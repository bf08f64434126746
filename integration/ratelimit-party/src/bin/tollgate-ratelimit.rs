//! `tollgate-ratelimit --redis redis://HOST:PORT --listen 0.0.0.0:8081`:
//! the rate limit service of the integration tests, as a process (the
//! `tollgate/ratelimit:dev` image runs it). Stops on SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::process::ExitCode;
use tollgate_ratelimit_party::Service;

const USAGE: &str = "usage: tollgate-ratelimit --redis redis://HOST:PORT [--listen ADDR:PORT (default 0.0.0.0:8081)]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate-ratelimit: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut redis = None;
    let mut listen: SocketAddr = SocketAddr::from(([0, 0, 0, 0], 8081));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--redis" => redis = Some(args.next().ok_or(USAGE)?),
            "--listen" => {
                let value = args.next().ok_or(USAGE)?;
                listen = value.parse().map_err(|e| format!("--listen {value}: {e}"))?;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let redis = redis.ok_or(USAGE)?;
    let service = Service::start_on(listen, &redis)?;
    println!(
        "tollgate-ratelimit: listening on {}, counting in {redis}",
        service.addr()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| format!("SIGTERM handler: {e}"))?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok::<(), String>(())
    })?;
    drop(service);
    Ok(())
}
