//! The command line of the parties' service binaries (`tollgate-ratelimit`,
//! `tollgate-kafka-rest`): `--<upstream flag> VALUE [--listen ADDR:PORT]`,
//! then serve until SIGTERM or SIGINT. A FROM scratch container's PID 1 has
//! no default SIGTERM handler: without one `docker stop` waits its timeout.

use std::net::SocketAddr;
use std::process::ExitCode;

/// One binary's command line.
pub struct Command {
    pub name: &'static str,
    /// The flag naming what the service talks to (`--redis`, `--broker`).
    pub upstream: &'static str,
    pub listen: SocketAddr,
    pub usage: &'static str,
}

/// Parses the arguments, runs `start(listen, upstream)` and keeps what it
/// returns (the running service) until SIGTERM or SIGINT. `start` returns
/// the service and the line to print once it listens.
pub fn serve<T>(command: &Command, start: impl FnOnce(SocketAddr, &str) -> Result<(T, String), String>) -> ExitCode {
    let run = || -> Result<(), String> {
        let Some((upstream, listen)) = parse(command, std::env::args().skip(1))? else {
            println!("{}", command.usage);
            return Ok(());
        };
        let (service, line) = start(listen, &upstream)?;
        println!("{}: {line}", command.name);
        until_terminated()?;
        drop(service);
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {e}", command.name);
            ExitCode::FAILURE
        }
    }
}

/// (upstream, listen), or `None` for `--help`.
fn parse(command: &Command, mut args: impl Iterator<Item = String>) -> Result<Option<(String, SocketAddr)>, String> {
    let mut upstream = None;
    let mut listen = command.listen;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            flag if flag == command.upstream => upstream = Some(args.next().ok_or(command.usage)?),
            "--listen" => {
                let value = args.next().ok_or(command.usage)?;
                listen = value.parse().map_err(|e| format!("--listen {value}: {e}"))?;
            }
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}\n{}", command.usage)),
        }
    }
    Ok(Some((upstream.ok_or(command.usage)?, listen)))
}

fn until_terminated() -> Result<(), String> {
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
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMAND: Command = Command {
        name: "t",
        upstream: "--redis",
        listen: SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 8081),
        usage: "usage: t --redis URL",
    };

    fn parsed(args: &[&str]) -> Result<Option<(String, SocketAddr)>, String> {
        parse(&COMMAND, args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn the_upstream_is_required_and_listen_has_a_default() {
        assert_eq!(
            parsed(&["--redis", "redis://r:6379"]),
            Ok(Some(("redis://r:6379".into(), COMMAND.listen)))
        );
        let listen: SocketAddr = "127.0.0.1:9".parse().unwrap_or(COMMAND.listen);
        assert_eq!(
            parsed(&["--listen", "127.0.0.1:9", "--redis", "u"]),
            Ok(Some(("u".into(), listen)))
        );
        assert_eq!(parsed(&[]), Err(COMMAND.usage.to_string()));
        assert_eq!(parsed(&["--help"]), Ok(None));
        assert!(parsed(&["--listen", "nope", "--redis", "u"]).is_err());
        assert!(parsed(&["--other"]).is_err_and(|e| e.contains("--other")));
    }
}
