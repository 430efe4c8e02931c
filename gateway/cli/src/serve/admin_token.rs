//! The admin token `sluice serve` makes when none is configured.
//!
//! A gateway without a token keeps its admin API and dashboard closed, which leaves a first run
//! without a way in; a generated default every install shares would be worse. So a random token
//! (256 bits) is written to `admin-token` in the data directory, readable by its owner only, and
//! reused on later starts; the log names the file, never the token.

use std::io;
use std::path::Path;

use rand::Rng;
use sluice_config::{Config, ConfigError, Secret};

use crate::private_files;

/// The file in the data directory.
pub const FILE: &str = "admin-token";

/// Fills in `config.admin.token` from the data directory's token file, creating it when there
/// is none. A configured token is left alone and no file is made.
pub fn fill_in(config: &mut Config, data_dir: &Path) -> Result<(), ConfigError> {
    if config.admin.token.is_some() {
        return Ok(());
    }
    let path = data_dir.join(FILE);
    let invalid = |reason: String| ConfigError::Invalid { field: "admin.token".to_owned(), reason };
    let (token, created) = load_or_create(&path, config.admin.min_token_length)
        .map_err(|e| invalid(format!("none configured, and the generated one in {}: {e}", path.display())))?;
    if created {
        tracing::warn!(
            file = %path.display(),
            "no admin token configured: generated one for the admin API and dashboard, readable by this user \
             only (read it from the file; set [admin] token or SLUICE_ADMIN_TOKEN to choose your own)"
        );
    } else {
        tracing::info!(file = %path.display(), "no admin token configured: using the one generated earlier");
    }
    config.admin.token = Some(token);
    Ok(())
}

fn load_or_create(path: &Path, min_length: usize) -> io::Result<(Secret, bool)> {
    private_files::restrict(path)?;
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim();
            if token.len() < min_length || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "not a usable admin token (at least {min_length} printable characters); delete the file \
                         to have a new one generated"
                    ),
                ));
            }
            Ok((Secret::new(token), false))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                private_files::create_dir(dir)?;
            }
            let token = generate();
            private_files::write(path, format!("{token}\n").as_bytes())?;
            Ok((Secret::new(token), true))
        }
        Err(e) => Err(e),
    }
}

/// `sl-admin-` and 64 hex digits: 256 bits from the thread's CSPRNG.
fn generate() -> String {
    let mut rng = rand::rng();
    format!("sl-admin-{:032x}{:032x}", rng.random::<u128>(), rng.random::<u128>())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn path(data_dir: &Path) -> std::path::PathBuf {
        data_dir.join(FILE)
    }

    fn config() -> Config {
        Config::from_toml("", &[], &|_| None).unwrap()
    }

    #[test]
    fn generates_a_private_token_once_and_reuses_it() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let mut first = config();
        fill_in(&mut first, &data).unwrap();
        let token = first.admin.token.clone().unwrap();
        assert!(token.expose().starts_with("sl-admin-") && token.expose().len() == 73);
        let file = path(&data);
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), token.expose());

        let mut second = config();
        fill_in(&mut second, &data).unwrap();
        assert_eq!(second.admin.token, Some(token), "the same token after a restart");
    }

    #[test]
    fn a_configured_token_wins_and_no_file_is_made() {
        let tmp = tempfile::tempdir().unwrap();
        let env = |n: &str| (n == "SLUICE_ADMIN_TOKEN").then(|| "configured-0123456789abcdef-0123456789".to_owned());
        let mut config = Config::from_toml("", &[], &env).unwrap();
        fill_in(&mut config, tmp.path()).unwrap();
        assert_eq!(config.admin.token.unwrap().expose(), "configured-0123456789abcdef-0123456789");
        assert!(!path(tmp.path()).exists());
    }

    #[test]
    fn a_weak_token_file_is_refused_without_quoting_it() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(path(tmp.path()), "hunter2\n").unwrap();
        let error = fill_in(&mut config(), tmp.path()).unwrap_err().to_string();
        assert!(error.starts_with("admin.token: ") && error.contains("delete the file"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }
}
