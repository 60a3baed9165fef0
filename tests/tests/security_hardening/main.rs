//! Hardening regressions (issue 18), from the attacker's side: raw TCP (and HTTP/2 where the
//! protocol matters) against a real gateway in front of an upstream that records everything
//! it receives. Every test asserts the status the attacker gets **and** what the upstream
//! received (headers, method, body), so a fix that refuses on one side but forwards on the
//! other fails.

mod bodies;
#[path = "../security_policy/common.rs"]
mod common;
mod connections;
mod harness;
mod heads;
