//! Library errors. Every error about an input names the file and says what was expected and
//! what was found, so the CLI can print it as is.

use std::path::{Path, PathBuf};

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operating system refused an operation on a file.
    #[error("{}: {source}", path.display())]
    Io {
        /// File involved.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A file's content is not what its format requires.
    #[error("{}: {message}", path.display())]
    Format {
        /// File involved.
        path: PathBuf,
        /// What was expected and what was found.
        message: String,
    },
    /// Activations contained NaN or ±Inf.
    #[error("{}: {count} non-finite activation value(s) (NaN/Inf), first at sequence {sequence}, position {position}, feature {feature}; they are never folded into statistics — fix the input or pass --allow-nonfinite to skip and report them", path.display())]
    NonFinite {
        /// File involved.
        path: PathBuf,
        /// Non-finite values seen so far.
        count: u64,
        /// Sequence of the first one.
        sequence: u64,
        /// Position of the first one.
        position: u32,
        /// Feature of the first one.
        feature: u64,
    },
    /// Arguments or configuration that cannot work together.
    #[error("{0}")]
    Invalid(String),
    /// A dictionary file cannot be written now: another connection held its lock past the
    /// busy timeout, or another program replaced the file after it was opened. Nothing was
    /// written; trying again (after reopening the file) may succeed.
    #[error("{}: {message}", path.display())]
    Unavailable {
        /// File involved.
        path: PathBuf,
        /// What stood in the way.
        message: String,
    },
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// A format error on `path`.
    pub fn format(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Format {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }
}
