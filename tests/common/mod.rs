//! Shared test drivers.
pub mod cluster;
