//! The process's file-descriptor budget: every client connection, worker connection and open
//! file takes one, and running out makes `accept` and upstream connects fail for everyone.
//! At start the soft `RLIMIT_NOFILE` is raised to the hard limit, and the data listener's
//! connection cap is fitted under what that leaves.

/// Descriptors kept back for everything that is not a connection: the store, TLS files, logs,
/// the runtime's own.
const RESERVED: usize = 128;

/// Raises the soft file-descriptor limit to the hard one and returns the limit in force
/// (`None` where the platform has no such limit or it cannot be read).
pub fn raise_nofile() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        let current = limit.current?;
        // An unlimited hard limit (macOS) cannot be the soft one: the kernel caps open files
        // per process anyway, so ask for a large figure instead.
        let target = limit.maximum.unwrap_or(1 << 20);
        if target > current {
            match setrlimit(Resource::Nofile, Rlimit { current: Some(target), maximum: limit.maximum }) {
                Ok(()) => return Some(target),
                Err(error) => {
                    tracing::warn!(current, target, %error, "cannot raise the file-descriptor limit");
                }
            }
        }
        Some(current)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The data listener's connection cap under a file-descriptor limit of `nofile`: each client
/// connection may hold a worker connection too, and the admin listener and the rest of the
/// process keep theirs.
pub fn fit_connections(configured: usize, admin: usize, nofile: Option<u64>) -> usize {
    let Some(nofile) = nofile else { return configured };
    let nofile = usize::try_from(nofile).unwrap_or(usize::MAX);
    let room = nofile.saturating_sub(RESERVED).saturating_sub(admin) / 2;
    configured.min(room.max(1))
}

#[cfg(test)]
mod tests {
    use super::fit_connections;

    #[test]
    fn the_cap_fits_under_the_descriptor_limit() {
        assert_eq!(fit_connections(10_000, 64, Some(1024)), (1024 - 128 - 64) / 2);
        assert_eq!(fit_connections(8, 64, Some(1024)), 8);
        assert_eq!(fit_connections(10_000, 64, Some(1 << 20)), 10_000);
        assert_eq!(fit_connections(10_000, 64, None), 10_000);
        assert_eq!(fit_connections(10_000, 64, Some(10)), 1);
    }
}
