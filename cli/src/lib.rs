//! The `tollgate` tool: everything a platform engineer does with a policy
//! before it reaches a sidecar. Every check on the policy itself is
//! `tollgate_core`'s, the code the filters run, so the tool and the filters
//! cannot disagree.

// serde_json's `Index` yields `Null` for a missing key; it does not panic.
#![allow(clippy::indexing_slicing)]

pub mod cases;
pub mod demo;
pub mod diff;
pub mod envoy;
pub mod explain;
pub mod manifests;
pub mod mesh;
pub mod package;
pub mod policy_file;
pub mod positions;
pub mod render;
pub mod replay;
pub mod tail;
