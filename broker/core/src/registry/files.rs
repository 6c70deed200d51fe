//! The operator files as a whole: what they say (`content_digest`, the same for the same
//! files wherever they are) and their state on disk (`fingerprint`, to notice a change).

use std::ffi::OsString;
use std::path::Path;
use std::time::SystemTime;

/// The observable state of both directories: changes whenever a `*.toml` file in either is
/// added, removed, renamed, resized, touched or replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(Vec<DirState>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum DirState {
    /// The directory cannot be read (vanished, permissions): the reason's kind.
    Unreadable(std::io::ErrorKind),
    /// The `*.toml` files, sorted by name.
    Files(Vec<FileState>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileState {
    name: OsString,
    /// Size, modification time and (Unix) device and inode, of the file a link points to.
    /// `None` when the file cannot be examined (say, removed since the listing).
    meta: Option<(u64, Option<SystemTime>, (u64, u64))>,
}

/// SHA-256 (hex, first 16 digits) over the names and contents of the `*.toml` files in
/// `dirs`: the same files give the same digest on every machine, whatever their times. Each
/// process publishes the digest of the snapshot it serves (`broker_policy_snapshot` in
/// /metrics), so an operator can see that every process runs the same policy.
pub fn content_digest(dirs: &[&Path]) -> String {
    let mut h = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for (i, dir) in dirs.iter().enumerate() {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map(|e| {
                e.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        h.update(&(i as u64).to_be_bytes());
        for f in files {
            let name = f
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let body = std::fs::read(&f).unwrap_or_default();
            for part in [name.as_bytes(), &body] {
                h.update(&(part.len() as u64).to_be_bytes());
                h.update(part);
            }
        }
    }
    hex::encode(&h.finish().as_ref()[..8])
}

pub fn fingerprint(dirs: &[&Path]) -> Fingerprint {
    Fingerprint(dirs.iter().map(|d| dir_state(d)).collect())
}

fn dir_state(dir: &Path) -> DirState {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return DirState::Unreadable(e.kind()),
    };
    let mut files: Vec<FileState> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| FileState {
            name: p.file_name().unwrap_or_default().to_owned(),
            // Follows symbolic links (a ConfigMap's files are links swapped underneath).
            meta: std::fs::metadata(&p)
                .ok()
                .map(|m| (m.len(), m.modified().ok(), identity(&m))),
        })
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    DirState::Files(files)
}

/// Device and inode: a file replaced by rename (as editors save) differs even when its size
/// and modification time do not.
#[cfg(unix)]
fn identity(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

#[cfg(not(unix))]
fn identity(_: &std::fs::Metadata) -> (u64, u64) {
    (0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_digest_follows_contents_not_places_or_times() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        for d in [&a, &b] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join("x.toml"), "k = 1\n").unwrap();
            std::fs::write(d.join("notes.txt"), "ignored").unwrap();
        }
        let da = content_digest(&[&a]);
        assert_eq!(da.len(), 16);
        assert_eq!(da, content_digest(&[&b]), "same files elsewhere");
        std::fs::write(b.join("notes.txt"), "changed").unwrap();
        assert_eq!(da, content_digest(&[&b]), "only *.toml counts");
        std::fs::write(b.join("x.toml"), "k = 2\n").unwrap();
        assert_ne!(da, content_digest(&[&b]), "content changed");
        std::fs::write(b.join("x.toml"), "k = 1\n").unwrap();
        std::fs::rename(b.join("x.toml"), b.join("y.toml")).unwrap();
        assert_ne!(da, content_digest(&[&b]), "file renamed");
    }

    #[test]
    fn fingerprint_sees_added_removed_changed_and_replaced_files() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        let fp = || fingerprint(&[&a, &b]);
        let start = fp();
        assert_eq!(fp(), start, "stable while nothing changes");

        std::fs::write(a.join("notes.txt"), "x").unwrap();
        assert_eq!(fp(), start, "only *.toml files count");

        std::fs::write(b.join("x.toml"), "k = 1\n").unwrap();
        let added = fp();
        assert_ne!(added, start);

        std::fs::write(b.join("x.toml"), "k = 12\n").unwrap();
        let resized = fp();
        assert_ne!(resized, added);

        // Same size, same content even: replaced by rename (a new inode).
        std::fs::write(b.join("x.tmp"), "k = 12\n").unwrap();
        std::fs::rename(b.join("x.tmp"), b.join("x.toml")).unwrap();
        let replaced = fp();
        assert_ne!(replaced, resized);

        std::fs::rename(b.join("x.toml"), b.join("y.toml")).unwrap();
        let renamed = fp();
        assert_ne!(renamed, replaced);

        std::fs::remove_file(b.join("y.toml")).unwrap();
        assert_eq!(fp(), start, "back to the same set of files");
    }

    #[test]
    fn fingerprint_of_a_vanished_directory_is_a_state_not_a_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        std::fs::create_dir(&a).unwrap();
        std::fs::write(a.join("x.toml"), "k = 1\n").unwrap();
        let before = fingerprint(&[&a]);
        std::fs::rename(&a, tmp.path().join("gone")).unwrap();
        let gone = fingerprint(&[&a]);
        assert_ne!(gone, before);
        assert_eq!(
            gone,
            Fingerprint(vec![DirState::Unreadable(std::io::ErrorKind::NotFound)])
        );
        std::fs::rename(tmp.path().join("gone"), &a).unwrap();
        assert_eq!(fingerprint(&[&a]), before, "the same files are back");
    }
}
