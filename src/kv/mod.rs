//! kv (to be written).
