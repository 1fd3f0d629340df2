//! # ringraft
//!
//! A high-throughput, benchmark-oriented Raft. One crate, one binary, three jobs: a node, a load
//! generator and a bench harness.
//!
//! The crate is laid out as rooms with one job each; dependencies point one way:
//!
//! ```text
//!   limits ──► core (sans-I/O Raft) ◄── sim (deterministic simulator: net, disk, clock, checker)
//!          └─► log  (segmented CRC log, io_uring, group commit)
//!   wire (flatbuffers frames) ─┐
//!   kv   (state machine)       ├─► runtime (the only glommio user: the node) ─► bin/ringraft.rs
//!   core, log ─────────────────┘
//!   wire ─► client (leader following, retries) ─► loadgen (workloads, targets, reports)
//!                                                 └─► bench (configs, launchers, reports, plots)
//!   netem (link emulation model, pure) ─► runtime (peer transport), bench (topologies)
//! ```
//!
//! * [`core`] is a pure function of (state, input): no clock, no socket, no file, no global
//!   randomness. Time arrives as ticks; randomness comes from a PRNG seeded through its config.
//!   Everything it wants done comes back as an [`core::Output`], whose fields encode the ordering
//!   rules (what may be sent now, what only after the local write is durable).
//! * [`log`] is the durable log: record batches with CRCs in preallocated segments, recovery that
//!   tells a torn tail from corruption, and group commit.
//! * [`sim`] drives several cores and key-value state machines with simulated time, network and
//!   disk, checks Raft's safety properties at every step and linearizability at the end, and
//!   replays any failure from one seed.
//! * [`kv`] is the replicated state machine: a key-value map with client sessions.
//! * [`wire`] is the flatbuffers schema code and the frame codec, verified at the edge.
//! * [`runtime`] runs a node on glommio; [`client`] talks to one; [`loadgen`] drives load at
//!   ringraft or etcd with one workload; [`bench`](mod@bench) runs whole experiments from config files.
//!
//! * [`netem`] models wide-area links (delay, jitter, loss, bandwidth, partitions) that the
//!   node's transport applies to its own messages, since this kernel has no netem.
//!
//! Every bound lives in [`limits`]. Every node setting (name, default, bound, help) is declared
//! once in [`settings`]: a node's TOML file and flags, a bench config's `[node]` and the core's
//! defaults all come from that one table.
#![deny(missing_docs)]

pub mod bench;
pub mod client;
pub mod core;
pub mod kv;
pub mod limits;
pub mod loadgen;
pub mod log;
pub mod netem;
pub mod runtime;
pub mod settings;
pub mod sim;
pub mod wire;
