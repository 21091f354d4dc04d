//! Finding and reading manifest files: directories recursively, `-` for standard input, with a
//! size limit so a stray huge file fails clearly instead of exhausting memory.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::domain::Reason;
use crate::manifest::Loader;

/// Extensions read when walking a directory (as kubectl does). Files named explicitly are read
/// whatever their extension.
const EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// Parses a size such as `8Mi`, `512Ki`, `1Gi` or `1000000`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mult) = match s {
        _ if s.ends_with("Ki") => (&s[..s.len() - 2], 1 << 10),
        _ if s.ends_with("Mi") => (&s[..s.len() - 2], 1 << 20),
        _ if s.ends_with("Gi") => (&s[..s.len() - 2], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{s:?} is not a size such as 8Mi, 512Ki or 1000000"))
}

/// Reads every manifest under `paths` into `loader`. Problems with the files themselves
/// (missing, unreadable, too large) become findings like any other.
pub fn load(paths: &[PathBuf], max_bytes: u64, loader: &mut Loader) {
    load_with(paths, max_bytes, loader, &mut |_| {});
}

/// [`load`], calling `on_file` with the number of files read so far after each one.
pub fn load_with(
    paths: &[PathBuf],
    max_bytes: u64,
    loader: &mut Loader,
    on_file: &mut dyn FnMut(usize),
) {
    let mut files = 0;
    for path in paths {
        if path.as_os_str() == "-" {
            let mut buf = Vec::new();
            let read = std::io::stdin()
                .lock()
                .take(max_bytes + 1)
                .read_to_end(&mut buf);
            add(loader, "-", read.map(|_| buf), max_bytes, true);
            files += 1;
            on_file(files);
            continue;
        }
        let mut found = Vec::new();
        let mut broken = Vec::new();
        if let Err(e) = collect(path, true, &mut found, &mut broken) {
            loader.file_problem(
                &path.display().to_string(),
                Reason::UnreadableFile,
                format!("cannot be read: {e}"),
            );
            continue;
        }
        if found.is_empty() {
            loader.file_problem(
                &path.display().to_string(),
                Reason::EmptyManifest,
                "is a directory with no *.yaml, *.yml or *.json files".into(),
            );
        }
        // A file that cannot be read hides no other.
        for (file, e) in broken {
            loader.file_problem(
                &file.display().to_string(),
                Reason::UnreadableFile,
                format!("cannot be read: {e}"),
            );
        }
        for file in found {
            let name = file.display().to_string();
            // A file named on the command line must hold objects; one of a directory may not.
            let named = file == *path;
            add(
                loader,
                &name,
                read_limited(&file, max_bytes),
                max_bytes,
                named,
            );
            files += 1;
            on_file(files);
        }
    }
}

fn add(
    loader: &mut Loader,
    name: &str,
    read: std::io::Result<Vec<u8>>,
    max_bytes: u64,
    named: bool,
) {
    match read {
        Ok(bytes) if bytes.len() as u64 > max_bytes => loader.file_problem(
            name,
            Reason::FileTooLarge,
            format!(
                "is larger than the {} limit: split it, or raise --max-file-size",
                human(max_bytes)
            ),
        ),
        Ok(bytes) if named => loader.add_bytes(name, &bytes),
        Ok(bytes) => loader.add_bytes_of_directory(name, &bytes),
        Err(e) => loader.file_problem(name, Reason::UnreadableFile, format!("cannot be read: {e}")),
    }
}

fn read_limited(path: &Path, max_bytes: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::fs::File::open(path)?
        .take(max_bytes + 1)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

/// Collects files under `path`, sorted, skipping hidden entries inside directories. Inside a
/// directory, an entry that cannot be read (a broken link) goes to `broken` when it is named
/// like a manifest, and a link to a directory is not followed (it may lead back up).
fn collect(
    path: &Path,
    explicit: bool,
    out: &mut Vec<PathBuf>,
    broken: &mut Vec<(PathBuf, std::io::Error)>,
) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for entry in entries {
            let hidden = entry
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            let link = std::fs::symlink_metadata(&entry).is_ok_and(|m| m.file_type().is_symlink());
            match std::fs::metadata(&entry) {
                Ok(m) if m.is_dir() && link => {}
                Ok(_) => {
                    if let Err(e) = collect(&entry, false, out, broken) {
                        broken.push((entry, e));
                    }
                }
                Err(e) if is_manifest(&entry) => broken.push((entry, e)),
                Err(_) => {}
            }
        }
    } else if explicit || is_manifest(path) {
        out.push(path.to_owned());
    }
    Ok(())
}

/// Whether a file in a directory is read as a manifest: by its extension.
fn is_manifest(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e))
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8Mi"), Ok(8 << 20));
        assert_eq!(parse_size("512Ki"), Ok(512 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        for bad in ["", "0", "8MB", "-1", "Mi", "99999999999999Gi"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        assert_eq!(human(8 << 20), "8 MiB");
        assert_eq!(human(1000), "1000 bytes");
    }
}
