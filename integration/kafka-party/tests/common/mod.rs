//! Shared by the crate's tests: a broker if Tansu is installed.

use tollgate_kafka_party::Broker;

/// A native broker, or `None` (with the reason printed) when `cargo xtask
/// setup` has not installed Tansu: the only reason a test here skips.
pub fn broker() -> Option<Broker> {
    let binary = tollgate_integration::paths::tansu_binary();
    if !binary.exists() {
        eprintln!(
            "skipped: {} is missing (cargo xtask setup installs it)",
            binary.display()
        );
        return None;
    }
    Some(Broker::start())
}
