//! Store: the on-disk dictionary. Every write goes to a temporary file in the target's
//! directory and is renamed over the target, so a crash mid-write leaves the previous file.

pub mod fdict;
pub mod neuronpedia;
pub mod seed_json;

use std::io::Write;
use std::path::Path;

use crate::dictionary::FeatureDictionary;
use crate::error::{Error, Result};

/// Loads a dictionary, choosing the format by content: a SQLite database (`.fdict`, see
/// [`fdict`]) or the seed JSON.
pub fn load(path: &Path) -> Result<FeatureDictionary> {
    if fdict::is_fdict(path)? {
        return fdict::read(path);
    }
    seed_json::read(path)
}

/// Saves a dictionary, choosing the format by extension (`.json` or `.fdict`).
pub fn save(dict: &FeatureDictionary, path: &Path) -> Result<()> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => seed_json::write(dict, path),
        Some("fdict") => fdict::write(dict, path),
        other => Err(Error::Invalid(format!(
            "{}: unsupported output extension {:?}; expected .json or .fdict",
            path.display(),
            other.unwrap_or("")
        ))),
    }
}

/// The temporary file a write of `path` goes through: hidden, in the same directory (so the
/// final rename stays on one filesystem and is atomic), unique per process.
pub(crate) fn temp_path_for(path: &Path) -> Result<std::path::PathBuf> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::Invalid(format!("{}: not a file path", path.display())))?;
    Ok(dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

/// Writes `path` atomically: `write` fills a temporary file next to it, which is then
/// flushed, synced and renamed over `path`.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<()> {
    let tmp = temp_path_for(path)?;
    let result = (|| -> std::io::Result<()> {
        let file = std::fs::File::create(&tmp)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        write(&mut w)?;
        w.flush()?;
        w.get_ref().sync_all()?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}
