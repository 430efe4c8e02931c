//! rustls server configuration, advertising h2 and http/1.1 over ALPN.
//!
//! A certificate configured as files (`[server.tls] cert`, `key`) is served by a
//! [`ReloadingCert`]: a `ResolvesServerCert` holding the current certified key, which the file
//! watch ([`ReloadingCert::watch`]) and the config reload replace when the files' contents
//! change. Each handshake takes the key in place at that moment, so new connections get the new
//! certificate while connections already open keep theirs; a pair that does not load (half
//! written, mismatched) leaves the previous certificate in service.

use std::hash::{DefaultHasher, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sluice_config::TlsConfig;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::ServerError;

/// How often [`ReloadingCert::watch`] reads the certificate files by default.
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(5);

/// Builds an acceptor from certificates already in memory (tests, generated demo certs). Its
/// certificate never changes.
pub fn from_der(certs: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<TlsAcceptor, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(format!("certificate and key do not form a valid pair: {e}")))?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// The data listener's certificate from files, replaced when they change.
#[derive(Debug)]
pub struct ReloadingCert {
    current: RwLock<Arc<CertifiedKey>>,
    state: Mutex<FilesState>,
}

#[derive(Debug)]
struct FilesState {
    files: TlsConfig,
    /// A digest of the certificate and key files' bytes as last loaded.
    loaded: u64,
    /// The digest of contents that failed to load, so that a broken pair is reported once,
    /// not at every poll.
    refused: Option<u64>,
}

/// A certificate read and checked, not yet in service ([`ReloadingCert::install`]).
pub struct LoadedCert {
    files: TlsConfig,
    key: Arc<CertifiedKey>,
    digest: u64,
}

/// What [`ReloadingCert::install`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertChange {
    /// New connections get the certificate just read.
    Replaced,
    /// The files hold what is already in service.
    Unchanged,
}

impl LoadedCert {
    /// Reads and checks `files`: PEM certificates (leaf first) and a private key that matches
    /// the leaf.
    pub fn read(files: &TlsConfig) -> Result<Self, ServerError> {
        let (cert, key) = read_files(files)?;
        let digest = digest(&cert, &key);
        let key = parse(files, &cert, &key)?;
        Ok(LoadedCert { files: files.clone(), key: Arc::new(key), digest })
    }
}

impl ReloadingCert {
    /// Loads `files`; fails as start-up must when they do not hold a usable pair.
    pub fn open(files: &TlsConfig) -> Result<Arc<Self>, ServerError> {
        let loaded = LoadedCert::read(files)?;
        Ok(Arc::new(ReloadingCert {
            current: RwLock::new(loaded.key),
            state: Mutex::new(FilesState { files: loaded.files, loaded: loaded.digest, refused: None }),
        }))
    }

    /// An acceptor that asks this certificate for every handshake.
    pub fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, ServerError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ServerError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(server)))
    }

    /// The files served from now.
    pub fn files(&self) -> TlsConfig {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).files.clone()
    }

    /// Puts `loaded` in service (and its files under watch), unless it is what is served now.
    pub fn install(&self, loaded: LoadedCert) -> CertChange {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let same_files = state.files.cert == loaded.files.cert && state.files.key == loaded.files.key;
        state.files = loaded.files;
        state.refused = None;
        if same_files && state.loaded == loaded.digest {
            return CertChange::Unchanged;
        }
        state.loaded = loaded.digest;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = loaded.key;
        CertChange::Replaced
    }

    /// Reads the files once and serves their contents if they changed and load. Returns what
    /// happened; a pair that does not load is logged once per distinct contents.
    pub fn poll(&self) -> Option<CertChange> {
        let files = self.files();
        let Ok((cert, key)) = read_files(&files) else {
            // Mid-rotation a file may be missing for a moment; the next poll reads it again.
            return None;
        };
        let digest = digest(&cert, &key);
        {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.loaded == digest || state.refused == Some(digest) {
                return Some(CertChange::Unchanged);
            }
        }
        match parse(&files, &cert, &key) {
            Ok(parsed) => {
                let change = self.install(LoadedCert { files: files.clone(), key: Arc::new(parsed), digest });
                if change == CertChange::Replaced {
                    tracing::info!(
                        cert = %files.cert.display(),
                        "TLS certificate files changed; new connections use the new certificate"
                    );
                }
                Some(change)
            }
            Err(error) => {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                // Both files are rewritten in turn: the first may be read before the second.
                if state.refused.replace(digest).is_none() {
                    tracing::warn!(
                        %error,
                        "TLS certificate files changed but do not load; the previous certificate stays in service"
                    );
                }
                None
            }
        }
    }

    /// Polls the files every `interval` until `cancel`.
    pub async fn watch(self: Arc<Self>, interval: Duration, cancel: CancellationToken) {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let this = Arc::clone(&self);
            // File reads: off the async workers.
            if tokio::task::spawn_blocking(move || this.poll()).await.is_err() {
                tracing::warn!("the TLS certificate check panicked");
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner)))
    }
}

fn read_files(files: &TlsConfig) -> Result<(Vec<u8>, Vec<u8>), ServerError> {
    let read = |what: &str, path: &Path| {
        std::fs::read(path).map_err(|e| ServerError::Tls(format!("reading {what} {}: {e}", path.display())))
    };
    Ok((read("certificate", &files.cert)?, read("private key", &files.key)?))
}

/// Change detection, not security: the bytes are parsed and checked before use.
fn digest(cert: &[u8], key: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    hasher.write(cert);
    hasher.write_u8(0xff);
    hasher.write(key);
    hasher.finish()
}

fn parse(files: &TlsConfig, cert: &[u8], key: &[u8]) -> Result<CertifiedKey, ServerError> {
    let certs = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServerError::Tls(format!("parsing certificate {}: {e}", files.cert.display())))?;
    if certs.is_empty() {
        return Err(ServerError::Tls(format!("{} holds no certificate", files.cert.display())));
    }
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|e| ServerError::Tls(format!("reading private key {}: {e}", files.key.display())))?;
    CertifiedKey::from_der(certs, key, &rustls::crypto::ring::default_provider()).map_err(|e| {
        ServerError::Tls(format!(
            "certificate {} and key {} do not form a valid pair: {e}",
            files.cert.display(),
            files.key.display()
        ))
    })
}
