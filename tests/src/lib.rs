//! Support for Warden's integration tests.

/// A real Kafka-protocol broker (Tansu) on loopback.
pub mod tansu;
