//! The `ringraft` command line: node, bench, load, sim, log.
use clap::Parser;

/// ringraft: a high-throughput, benchmark-oriented Raft.
#[derive(Parser)]
#[command(version, about)]
enum Cli {
    /// Run the deterministic simulator: one seed (`--seed`) or a sweep (`--seeds A..B`).
    Sim(ringraft::sim::cli::SimArgs),
}

fn main() {
    match Cli::parse() {
        Cli::Sim(args) => std::process::exit(ringraft::sim::cli::main(args)),
    }
}
