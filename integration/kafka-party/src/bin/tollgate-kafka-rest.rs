//! `tollgate-kafka-rest --broker HOST:PORT --listen 0.0.0.0:8082`: the
//! Kafka REST Proxy v2 front of the audit tests, as a process (the
//! `tollgate/kafka-rest:dev` image runs it). Stops on SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::process::ExitCode;
use tollgate_kafka_party::Front;

const USAGE: &str = "usage: tollgate-kafka-rest --broker HOST:PORT [--listen ADDR:PORT (default 0.0.0.0:8082)]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate-kafka-rest: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut broker = None;
    let mut listen = SocketAddr::from(([0, 0, 0, 0], 8082));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--broker" => broker = Some(args.next().ok_or(USAGE)?),
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
    let broker = broker.ok_or(USAGE)?;
    let front = Front::start_on(listen, &broker)?;
    println!(
        "tollgate-kafka-rest: listening on {}, producing to {broker}",
        front.addr()
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
    drop(front);
    Ok(())
}
