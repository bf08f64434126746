//! JWT verification: tokens, keys, signatures, claims and per-route rules.

pub mod der;
pub mod jwk;
pub mod rsa;
pub mod token;
pub mod verify;

#[cfg(test)]
mod tests;
