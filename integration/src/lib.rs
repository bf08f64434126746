//! Real-Envoy integration harness. Everything listens on 127.0.0.1 (in
//! container mode: parties on the default bridge's host address, Envoy's
//! ports published on 127.0.0.1) with ports chosen at run time, every process is stopped by PID (also when a test
//! panics), and readiness is polled, never slept on.

// A test harness: a fixture that cannot start must fail the test loudly, and
// serde_json's `Index` yields `Null` for a missing key instead of panicking.
#![allow(clippy::panic, clippy::indexing_slicing)]

pub use tollgate_bootstrap as bootstrap;
pub mod docker;
pub mod echo;
pub mod envoy;
pub mod http;
pub mod jwks;
pub mod paths;
pub mod prometheus;
pub mod server;
pub mod service_main;
pub mod sink;
pub mod xds;

pub use bootstrap::{Bootstrap, Delivery, Filter};
pub use echo::Echo;
pub use envoy::{Envoy, Launch};
pub use http::{Request, Response};
pub use jwks::JwksServer;
pub use prometheus::Prometheus;
pub use sink::Sink;
pub use xds::WatchedFile;
