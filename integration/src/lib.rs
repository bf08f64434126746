//! Real-Envoy integration harness. Everything listens on 127.0.0.1 with ports
//! chosen at run time, every process is stopped by PID (also when a test
//! panics), and readiness is polled, never slept on.

pub mod bootstrap;
pub mod echo;
pub mod envoy;
pub mod http;
pub mod paths;

pub use bootstrap::{Bootstrap, Filter};
pub use echo::Echo;
pub use envoy::Envoy;
pub use http::{Request, Response};
