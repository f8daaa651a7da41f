//! Shared helpers for the integration tests in `tests/*.rs`: `mod support;` then
//! `use support::sshd::TestSshd;`.
//!
//! The private-sshd harness lives in the `conn-cli` crate (`conn demo` starts the same daemon);
//! it is included here by path so that tests and demo share one file.
#![allow(dead_code)]

#[path = "../../crates/conn-cli/src/private_sshd.rs"]
pub mod sshd;
