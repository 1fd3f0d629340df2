//! The load generator: one workload, several targets (ringraft, and etcd with the `etcd`
//! feature), one recorder, one report format. Closed loop measures capacity; open loop measures
//! latency at a fixed rate from each request's intended start (no coordinated omission).

#[cfg(feature = "etcd")]
pub mod etcd_target;
pub mod failure;
pub mod hlog;
pub mod process;
pub mod progress;
pub mod recorder;
pub mod report;
pub mod retry;
pub mod ringraft_target;
pub mod workload;

pub use recorder::{OpKind, Recorder, SecondBucket};
pub use report::{hgrm, LoadReport, Percentiles};
pub use retry::RetryPolicy;
pub use workload::{LoopMode, Op, OpGen, Workload};
