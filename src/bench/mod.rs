//! Bench harness (being written).
pub mod etcd;
