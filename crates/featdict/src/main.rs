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
    reserve_heap_growth();
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

/// glibc grows the heap only by what each allocation needs, and every growth changes the
/// process's memory map under a lock that page faults also take. Finalizing a dictionary
/// allocates millions of small strings on every thread at once, so those growths and the
/// faults on fresh pages serialize the threads on that lock; asking for 64 MiB of slack per
/// growth cut `finalize` by ~30 % at 16,384 features (BENCHMARKS.md, "End to end").
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn reserve_heap_growth() {
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    const M_TOP_PAD: i32 = -2;
    // SAFETY: mallopt only tunes the allocator; it runs before any other thread exists.
    unsafe {
        mallopt(M_TOP_PAD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn reserve_heap_growth() {}
