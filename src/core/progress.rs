//! Per-follower replication progress (stub).
