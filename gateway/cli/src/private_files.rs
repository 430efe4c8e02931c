//! The data directory and the files in it that hold secrets, readable by their owner only.
//!
//! The demo's API keys and admin token (`demo-secrets.json`) and the embedded store (tenants,
//! key digests, usage, the audit log, plugin code) live in the data directory. Under the usual
//! umask of 022 they would be readable by every user of the machine, so modes are set
//! explicitly: 0700 for a directory the gateway creates, 0600 for the files — also for files an
//! earlier version left group- or world-readable.

use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Owner only.
pub const DIR_MODE: u32 = 0o700;
/// Owner read and write only.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and its missing parents with mode 0700 (less the umask, which can only narrow
/// it). An existing directory keeps its mode: whoever made it chose it (a shared
/// `/var/lib/sluice`, a mounted volume), and the files in it are private anyway.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Writes `bytes` to `path`, which ends up with mode 0600: created so, or narrowed before the
/// secret is written when it already existed with a wider mode.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(FILE_MODE).open(path)?;
    // `mode` applies only to a file this call creates.
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    file.write_all(bytes)
}

/// Takes group and other permissions off an existing file; a missing file is not an error.
/// The owner's bits stay as they are (a file made read-only stays read-only).
pub fn restrict(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        // A symlink's own mode means nothing; its target is the operator's business.
        Ok(meta) if meta.file_type().is_symlink() => Ok(()),
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
            fs::set_permissions(path, Permissions::from_mode(meta.permissions().mode() & 0o700))
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes the embedded store's database private before SQLite opens it: a missing file is
/// created empty with mode 0600 (SQLite reads an empty file as an empty database, and gives
/// the `-wal`, `-shm` and `-journal` files it creates the database file's mode), and existing
/// ones — the database and those companions — are narrowed to the owner.
pub fn prepare_sqlite_file(path: &Path) -> io::Result<()> {
    OpenOptions::new().write(true).create(true).truncate(false).mode(FILE_MODE).open(path)?;
    restrict(path)?;
    for suffix in ["-wal", "-shm", "-journal"] {
        restrict(&with_suffix(path, suffix))?;
    }
    Ok(())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// A file as an earlier version, or another tool, left it.
    fn planted(path: &Path, contents: &[u8], mode: u32) {
        fs::write(path, contents).unwrap();
        fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_created_directory_is_owner_only_and_an_existing_one_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("a/b/sluice-data");
        create_dir(&data).unwrap();
        assert_eq!(mode(&data), DIR_MODE);
        assert_eq!(mode(&tmp.path().join("a")), DIR_MODE, "created parents too");

        let shared = tmp.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, Permissions::from_mode(0o755)).unwrap();
        create_dir(&shared).unwrap();
        assert_eq!(mode(&shared), 0o755);
    }

    #[test]
    fn secrets_are_written_0600_also_over_a_world_readable_file() {
        let tmp = tempfile::tempdir().unwrap();
        let new = tmp.path().join("new.json");
        write(&new, b"{\"token\":1}").unwrap();
        assert_eq!(mode(&new), FILE_MODE);
        assert_eq!(fs::read(&new).unwrap(), b"{\"token\":1}");

        let old = tmp.path().join("old.json");
        planted(&old, b"a longer previous content", 0o644);
        write(&old, b"new").unwrap();
        assert_eq!(mode(&old), FILE_MODE);
        assert_eq!(fs::read(&old).unwrap(), b"new", "truncated");
    }

    #[test]
    fn restrict_drops_group_and_other_bits_only() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        planted(&file, b"x", 0o664);
        restrict(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        fs::set_permissions(&file, Permissions::from_mode(0o444)).unwrap();
        restrict(&file).unwrap();
        assert_eq!(mode(&file), 0o400, "read-only stays read-only");
        restrict(&tmp.path().join("missing")).unwrap();
    }

    #[test]
    fn the_sqlite_file_and_its_companions_become_private() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("sluice.db");
        prepare_sqlite_file(&db).unwrap();
        assert_eq!(mode(&db), FILE_MODE);
        assert_eq!(fs::metadata(&db).unwrap().len(), 0, "an empty file: SQLite's empty database");

        // Left by an earlier version under umask 022.
        for p in [db.clone(), with_suffix(&db, "-wal"), with_suffix(&db, "-shm")] {
            planted(&p, b"not empty", 0o644);
        }
        prepare_sqlite_file(&db).unwrap();
        for p in [db.clone(), with_suffix(&db, "-wal"), with_suffix(&db, "-shm")] {
            assert_eq!(mode(&p), FILE_MODE, "{}", p.display());
        }
        assert_eq!(fs::read(&db).unwrap(), b"not empty", "an existing database is not truncated");
    }
}
