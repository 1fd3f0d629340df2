//! The `ringraft` command line: node, bench, load, sim, log.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// ringraft: a high-throughput, benchmark-oriented Raft.
#[derive(Parser)]
#[command(version, about)]
enum Cli {
    /// Run the deterministic simulator: one seed (`--seed`) or a sweep (`--seeds A..B`).
    Sim(ringraft::sim::cli::SimArgs),
    /// Inspect a node's log directory offline.
    #[command(subcommand)]
    Log(LogCmd),
}

/// `ringraft log ...`
#[derive(Subcommand)]
enum LogCmd {
    /// Check every segment and record; exit 0 when clean, 1 on corruption, 2 on a torn tail.
    Verify {
        /// The log directory.
        dir: PathBuf,
    },
    /// Print entries [from, to) one per line.
    Dump {
        /// The log directory.
        dir: PathBuf,
        /// First index to print.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// One past the last index to print.
        #[arg(long, default_value_t = u64::MAX)]
        to: u64,
    },
}

fn run_log(cmd: LogCmd) -> ExitCode {
    match cmd {
        LogCmd::Verify { dir } => {
            let report = ringraft::log::verify(&dir);
            println!("{report}");
            if report.problem.is_some() {
                ExitCode::from(1)
            } else if report.torn_tail.is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        LogCmd::Dump { dir, from, to } => match ringraft::log::dump(&dir, from, to, &mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ringraft log dump: {e}");
                ExitCode::from(1)
            }
        },
    }
}

fn main() -> ExitCode {
    match Cli::parse() {
        Cli::Log(cmd) => run_log(cmd),
        Cli::Sim(args) => ExitCode::from(ringraft::sim::cli::main(args).clamp(0, 255) as u8),
    }
}
