//! Tollgate's decision code. Everything that decides lives here, free of
//! proxy-wasm, so it is unit-tested natively and in wasm32.

pub mod audit;
pub mod decision;
pub mod form;
pub mod header_map;
pub mod headers;
pub mod jwt;
pub mod metrics;
pub mod params;
pub mod path;
pub mod policy;
pub mod ratelimit;
pub mod reply;
pub mod request;
pub mod route;
pub mod stage;
pub mod state;
pub mod tenant;

/// Whether a filter's denial is applied or only observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Enforce,
    /// Decide, count and record, but let the request through.
    Shadow,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Shadow => "shadow",
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod attack_tests;
