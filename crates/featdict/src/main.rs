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
    if !cli.serves() {
        exit_quietly_on_closed_pipe();
    }
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line ("reading X: cause"), each cause once: the engine's
/// I/O errors already end with their OS error, which the chain would repeat, and its errors
/// start with the file they are about, which a context naming that file ("cannot read
/// dictionary X") already said.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if line.contains(&cause) {
            continue;
        }
        // The longest "X: " the cause starts with whose X ends the line so far.
        let named = cause
            .match_indices(": ")
            .map(|(i, _)| i)
            .filter(|&i| i > 0 && line.ends_with(&cause[..i]))
            .last();
        line.push_str(": ");
        line.push_str(named.map_or(cause.as_str(), |i| &cause[i + 2..]));
    }
    line
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

/// `featdict show DICT ID | head` closes the pipe before the output ends. Rust ignores
/// SIGPIPE, so the next `println!` would panic on the broken pipe; with the default action
/// restored the process ends quietly, as `cat` or `grep` do. Not for `serve`: a write to a
/// socket whose client left must not end the server.
#[cfg(unix)]
fn exit_quietly_on_closed_pipe() {
    extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
    }
    // The same numbers on Linux and macOS.
    const SIGPIPE: i32 = 13;
    const SIG_DFL: usize = 0;
    // SAFETY: restoring a signal's default action; no handler runs in this process.
    unsafe {
        signal(SIGPIPE, SIG_DFL);
    }
}

#[cfg(not(unix))]
fn exit_quietly_on_closed_pipe() {}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_file_named_by_the_context_and_the_cause_is_said_once() {
        let e = anyhow::anyhow!("pats.toml: not a feature dictionary JSON")
            .context("cannot read dictionary pats.toml");
        assert_eq!(
            one_line(&e),
            "cannot read dictionary pats.toml: not a feature dictionary JSON"
        );
        // Another file in the cause is kept, and so is a cause that repeats nothing.
        let e = anyhow::anyhow!("b.json: truncated").context("cannot read dictionary a.json");
        assert_eq!(
            one_line(&e),
            "cannot read dictionary a.json: b.json: truncated"
        );
        let e = anyhow::anyhow!("Permission denied").context("writing x");
        assert_eq!(one_line(&e), "writing x: Permission denied");
    }
}
