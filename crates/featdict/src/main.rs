//! `featdict`: build, inspect and query feature dictionaries from the command line.
//!
//! The binary only parses arguments, calls the `feature_dictionary` library and prints.

mod analyze_cmds;
mod commands;
mod demo;
mod label_cmds;
mod print;
mod serve;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = commands::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole context chain on one line: "reading X: cause".
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
