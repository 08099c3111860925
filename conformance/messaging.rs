//! Conformance: see coverage.rs for how statements are named.

#[path = "../tests/common/mod.rs"]
mod common;
