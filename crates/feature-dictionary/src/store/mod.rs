//! Store: the on-disk dictionary. Every write goes to a temporary file in the target's
//! directory and is renamed over the target, so a crash mid-write leaves the previous file.

pub mod fdict;
pub mod json;
pub mod neuronpedia;
#[cfg(feature = "serde-state")]
pub mod partial;
pub mod seed_json;

use std::io::Write;
use std::path::Path;

use crate::dictionary::FeatureDictionary;
use crate::error::{Error, Result};

/// Loads a dictionary, choosing the format by content: a SQLite database (`.fdict`, see
/// [`fdict`]) or the seed JSON. A file named `.fdict` that is neither is reported as a
/// damaged `.fdict`.
pub fn load(path: &Path) -> Result<FeatureDictionary> {
    // A pipe or FIFO (`cat d.json | featdict stats /dev/stdin`) can be read only once: the
    // look at its first bytes must not consume them, so read it whole and decide on that.
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
        let bytes = crate::ingest::map_file_expecting(path, "a dictionary (.json)")?;
        if bytes.starts_with(fdict::SQLITE_MAGIC) {
            return Err(Error::format(
                path,
                "is a .fdict (SQLite) database read from a pipe or device; SQLite needs a regular file, so save it to one first",
            ));
        }
        return seed_json::read_bytes(path, &bytes);
    }
    if starts_like_partial(path) {
        return Err(not_finalized(path));
    }
    if fdict::is_fdict(path)? {
        return fdict::read(path);
    }
    // The JSON reader would call a truncated or overwritten `.fdict` "JSON that does not
    // parse"; JSON saved under that name (the content decides) still loads.
    if path.extension().is_some_and(|e| e == "fdict") && !starts_like_json(path)? {
        return fdict::read(path);
    }
    seed_json::read(path)
}

/// The first bytes of a partial dictionary (`.fdpart`, the accumulator state of one shard;
/// see `store::partial`, with the `serde-state` feature).
pub const PARTIAL_MAGIC: &[u8; 8] = b"FDPART\0\x01";

/// Whether the file at `path` starts like a partial dictionary.
pub fn starts_like_partial(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| &head == PARTIAL_MAGIC)
}

/// The error of a command that needs a finalized dictionary but was given a partial one.
pub fn not_finalized(path: &Path) -> Error {
    Error::format(
        path,
        "is a partial dictionary (accumulator state, not finalized); finalize it first: `featdict merge PARTIAL.fdpart [MORE.fdpart …] --out DICT.fdict`",
    )
}

/// Whether the first non-blank byte of the file is `{` (a JSON dictionary starts so).
fn starts_like_json(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut head = Vec::with_capacity(256);
    std::fs::File::open(path)
        .and_then(|f| f.take(256).read_to_end(&mut head))
        .map_err(|e| Error::io(path, e))?;
    Ok(head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'))
}

/// Saves a dictionary, choosing the format by extension (`.json` or `.fdict`).
pub fn save(dict: &FeatureDictionary, path: &Path) -> Result<()> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => seed_json::write(dict, path),
        Some("fdict") => fdict::write(dict, path),
        other => Err(unsupported_extension(path, other)),
    }
}

/// The error of a dictionary path that is neither `.json` nor `.fdict`.
pub(crate) fn unsupported_extension(path: &Path, extension: Option<&str>) -> Error {
    Error::Invalid(format!(
        "{}: unsupported output extension {:?}; expected .json or .fdict",
        path.display(),
        extension.unwrap_or("")
    ))
}

/// Checks, before any work, what [`save`] would only find out at the end of a long build:
/// that `path` has a supported extension, is not a directory, and lies in a directory that
/// exists.
pub fn check_output(path: &Path) -> Result<()> {
    let extension = path.extension().and_then(|e| e.to_str());
    if !matches!(extension, Some("json" | "fdict")) {
        return Err(unsupported_extension(path, extension));
    }
    check_output_location(path)?;
    check_link_format(path)
}

/// The path's extension decides the format written; through a symbolic link whose target
/// names the other dictionary format (`d.json` → `d.fdict`), the file would be written in a
/// format its own name contradicts, so that is refused.
pub(crate) fn check_link_format(path: &Path) -> Result<()> {
    let format = |p: &Path| match p.extension().and_then(|e| e.to_str()) {
        Some(e @ ("json" | "fdict")) => Some(e.to_string()),
        _ => None,
    };
    let target = output_target(path)?;
    match (format(path), format(&target)) {
        (Some(asked), Some(named)) if asked != named => Err(Error::Invalid(format!(
            "{}: is a symbolic link to {}; writing .{asked} through it would put a .{asked} dictionary in a file named .{named}; give the target's path, or a link with its extension",
            path.display(),
            target.display()
        ))),
        _ => Ok(()),
    }
}

/// The location half of [`check_output`], for outputs of any format: `path` does not exist
/// yet or is a regular file (or a symbolic link to one, see [`output_target`]), and its
/// directory exists.
pub fn check_output_location(path: &Path) -> Result<()> {
    let target = output_target(path)?;
    let (dir, _) = dir_and_name(&target)?;
    if !dir.is_dir() {
        return Err(missing_directory(path, dir));
    }
    Ok(())
}

/// Refuses an output that is one of the command's inputs (the same file, through any path,
/// symlink or hard link): the write would replace the file being read with the command's
/// output, e.g. the tokens JSON with a dictionary or a `.fdict` with Neuronpedia JSON.
/// Inputs that do not exist, and an output that does not exist yet, are never the same file.
pub fn check_not_input(output: &Path, inputs: &[(&str, &Path)]) -> Result<()> {
    for (what, input) in inputs {
        if same_file(output, input) {
            return Err(Error::Invalid(format!(
                "{}: the output is the {what} {} this command reads; writing it would replace that input, so give another --out",
                output.display(),
                input.display()
            )));
        }
    }
    Ok(())
}

/// Whether `a` and `b` name the same existing file.
pub fn same_file(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        ma.dev() == mb.dev() && ma.ino() == mb.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (ma, mb);
        matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
    }
}

/// The error for an output whose directory does not exist, said about the output asked for
/// (not about a scratch file next to it).
fn missing_directory(path: &Path, dir: &Path) -> Error {
    Error::io(
        path,
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "cannot write it: directory {} does not exist",
                dir.display()
            ),
        ),
    )
}

/// The directory and file name of an output path (`.` when it has no directory part).
fn dir_and_name(path: &Path) -> Result<(&Path, String)> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::Invalid(format!("{}: not a file path", path.display())))?;
    Ok((dir, name.to_string_lossy().into_owned()))
}

/// A hidden file next to `path` that only this process writes: `.NAME.tmp-PID`, or
/// `.NAME.PART.tmp-PID` for one of several scratch files. Same directory, so the final rename
/// stays on one filesystem and is atomic. Leftovers of writers that were killed (their PID no
/// longer runs) are removed first, so a `kill -9` does not leave them behind for good.
pub(crate) fn temp_sibling(path: &Path, part: Option<&str>) -> Result<std::path::PathBuf> {
    let (dir, name) = dir_and_name(path)?;
    if !dir.is_dir() {
        return Err(missing_directory(path, dir));
    }
    remove_stale_temps(dir, &name);
    let part = part.map(|p| format!("{p}.")).unwrap_or_default();
    Ok(dir.join(format!(".{name}.{part}tmp-{}", std::process::id())))
}

/// The temporary file a write of `path` goes through (see [`temp_sibling`]).
pub(crate) fn temp_path_for(path: &Path) -> Result<std::path::PathBuf> {
    temp_sibling(path, None)
}

/// Removes `.NAME.[PART.]tmp-PID[-SUFFIX]` files in `dir` whose PID is not a running process
/// (SQLite's `-wal`/`-shm`/`-journal` companions included). Only where `/proc` tells which
/// processes run; a PID that runs again (reused) keeps its file, which is merely left over.
fn remove_stale_temps(dir: &Path, name: &str) {
    let proc_dir = Path::new("/proc");
    if !proc_dir.join("self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let Some(rest) = file_name.strip_prefix(&prefix) else {
            continue;
        };
        let Some(at) = rest.find("tmp-") else {
            continue;
        };
        // Between the name and "tmp-" there is nothing or one scratch part ending in '.'.
        let part = &rest[..at];
        if !(part.is_empty() || (part.ends_with('.') && !part[..part.len() - 1].contains('.'))) {
            continue;
        }
        let digits: &str = &rest[at + 4..];
        let end = digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        let suffix = &digits[end..];
        if end == 0 || !matches!(suffix, "" | "-wal" | "-shm" | "-journal") {
            continue;
        }
        let pid = &digits[..end];
        if pid != std::process::id().to_string() && !proc_dir.join(pid).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The file a write of `path` replaces: `path` itself, or, when `path` is a symbolic link,
/// the file it points to (the link stays a link). Refuses a path that exists but is not a
/// regular file: renaming a new file over a device, a FIFO or a socket would replace it
/// (`/dev/null` with a dictionary, when run as root).
pub fn output_target(path: &Path) -> Result<std::path::PathBuf> {
    let link = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(path.to_path_buf()),
        Err(e) => return Err(Error::io(path, e)),
        Ok(md) => md.file_type().is_symlink(),
    };
    let target = if link {
        std::fs::canonicalize(path).map_err(|e| {
            let to = std::fs::read_link(path)
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            Error::io(
                path,
                std::io::Error::new(
                    e.kind(),
                    format!("is a symbolic link to {to:?}, which cannot be written: {e}"),
                ),
            )
        })?
    } else {
        path.to_path_buf()
    };
    let md = std::fs::metadata(&target).map_err(|e| Error::io(path, e))?;
    let kind = md.file_type();
    if kind.is_dir() {
        return Err(Error::format(
            path,
            "is a directory; expected a file path to write",
        ));
    }
    if !kind.is_file() {
        return Err(Error::format(
            path,
            "is not a regular file (a device, FIFO or socket); expected a file path to write, which would be replaced",
        ));
    }
    Ok(target)
}

/// Renames the finished temporary file `tmp` over `target`, giving it the permissions of the
/// file it replaces: a dictionary kept private (0600) stays private when rewritten.
pub(crate) fn replace_file(tmp: &Path, target: &Path) -> std::io::Result<()> {
    if let Ok(md) = std::fs::metadata(target) {
        std::fs::set_permissions(tmp, md.permissions())?;
    }
    std::fs::rename(tmp, target)
}

/// The error a write given up on its stop flag ends with.
fn stopped() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::Interrupted, "the write was stopped")
}

/// Writes `path` atomically: `write` fills a temporary file next to it, which is then
/// flushed, synced and renamed over `path` (over the file it links to, for a symbolic link;
/// see [`output_target`]), keeping the replaced file's permissions.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<()> {
    let target = output_target(path)?;
    let tmp = temp_path_for(&target)?;
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
    replace_file(&tmp, &target).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_removes_the_temp_files_of_dead_writers_only() {
        let dir = tempfile::tempdir().unwrap();
        // PIDs above the kernel's maximum (2^22) never run; PID 1 always does.
        let dead = 4_999_999;
        let names = [
            (format!(".d.json.tmp-{dead}"), false),
            (format!(".d.json.tmp-{dead}-wal"), false),
            (format!(".d.json.locations.tmp-{dead}"), false),
            (".d.json.tmp-1".to_string(), true),
            (format!(".other.json.tmp-{dead}"), true),
            (format!(".d.json.a.b.tmp-{dead}"), true),
            (".d.json.tmp-x".to_string(), true),
            (format!(".d.json.tmp-{dead}.bak"), true),
        ];
        for (name, _) in &names {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let out = dir.path().join("d.json");
        write_atomically(&out, |w| w.write_all(b"{}")).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"{}");
        for (name, kept) in &names {
            assert_eq!(dir.path().join(name).exists(), *kept, "{name}");
        }
        // The output and the five kept files; no temp file of this write is left either.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1 + 5);
    }

    #[cfg(unix)]
    #[test]
    fn outputs_replace_regular_files_only_keep_their_mode_and_write_through_links() {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.json");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // (Not /dev/null: were this check ever broken, the test run as root would replace it.)
        for bad in [fifo.as_path(), dir.path()] {
            let e = write_atomically(bad, |w| w.write_all(b"{}")).unwrap_err();
            let e = e.to_string();
            assert!(e.contains(&bad.display().to_string()), "{e}");
            assert!(
                e.contains("not a regular file") || e.contains("is a directory"),
                "{e}"
            );
            check_output_location(bad).unwrap_err();
        }
        assert!(std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo());

        // A private file stays private when rewritten.
        let private = dir.path().join("private.json");
        std::fs::write(&private, b"old").unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_atomically(&private, |w| w.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read(&private).unwrap(), b"new");
        let mode = std::fs::metadata(&private).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        // Through a symbolic link the linked file is written and the link stays a link.
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&private, &link).unwrap();
        write_atomically(&link, |w| w.write_all(b"via link")).unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&private).unwrap(), b"via link");
        let dangling = dir.path().join("dangling.json");
        std::os::unix::fs::symlink(dir.path().join("nowhere/x.json"), &dangling).unwrap();
        let e = write_atomically(&dangling, |w| w.write_all(b"{}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("symbolic link") && e.contains("nowhere"), "{e}");

        // A link named for one dictionary format that points at a file named for the other.
        let fdict_file = dir.path().join("d.fdict");
        std::fs::write(&fdict_file, b"kept").unwrap();
        let json_link = dir.path().join("d.json");
        std::os::unix::fs::symlink(&fdict_file, &json_link).unwrap();
        let e = check_output(&json_link).unwrap_err().to_string();
        assert!(
            e.contains("d.json") && e.contains("d.fdict") && e.contains("symbolic link"),
            "{e}"
        );
        let set = crate::model::FeatureSet {
            layer: 0,
            features: Default::default(),
            total_tokens_processed: 0,
            model_name: String::new(),
            sae_name: String::new(),
            metadata: Default::default(),
        };
        let dict = crate::FeatureDictionary::new(Default::default(), set);
        save(&dict, &json_link).unwrap_err();
        let fdict_link = dir.path().join("other.fdict");
        let json_file = dir.path().join("real.json");
        std::fs::write(&json_file, b"kept").unwrap();
        std::os::unix::fs::symlink(&json_file, &fdict_link).unwrap();
        save(&dict, &fdict_link).unwrap_err();
        assert_eq!(std::fs::read(&json_file).unwrap(), b"kept");
        assert_eq!(std::fs::read(&fdict_file).unwrap(), b"kept");
        // The extension agrees (or the target names no format): allowed.
        check_output(&link).unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"").unwrap();
        let plain_link = dir.path().join("plain.json");
        std::os::unix::fs::symlink(&plain, &plain_link).unwrap();
        check_output(&plain_link).unwrap();
    }

    #[test]
    fn an_output_that_is_an_input_is_refused_through_any_path() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("tokens.json");
        std::fs::write(&input, b"[]").unwrap();
        let other = dir.path().join("d.json");
        // Not yet written, then written: a different file either way.
        check_not_input(&other, &[("tokens", &input)]).unwrap();
        std::fs::write(&other, b"{}").unwrap();
        check_not_input(&other, &[("tokens", &input)]).unwrap();
        // The same file by its own name, through `dir/./name`, and through a hard link.
        let dotted = dir.path().join(".").join("tokens.json");
        let linked = dir.path().join("linked.json");
        std::fs::hard_link(&input, &linked).unwrap();
        for out in [&input, &dotted, &linked] {
            let e = check_not_input(out, &[("dictionary", &other), ("tokens", &input)])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("is the tokens") && e.contains("another --out"),
                "{e}"
            );
        }
        // A missing input is never the output.
        check_not_input(&other, &[("tokens", &dir.path().join("missing.json"))]).unwrap();
    }
}
