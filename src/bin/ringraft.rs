//! The `ringraft` command line: node, bench, load, sim, log.
use clap::Parser;

/// ringraft: a high-throughput, benchmark-oriented Raft.
#[derive(Parser)]
#[command(version, about)]
enum Cli {}

fn main() {
    let _ = Cli::parse();
}
