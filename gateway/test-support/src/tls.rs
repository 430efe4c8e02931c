//! A throwaway certificate authority and a server certificate for `127.0.0.1` and `localhost`.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

/// A CA whose root the test client trusts, and the server certificate it signed.
#[derive(Debug)]
pub struct TestCa {
    /// The CA certificate: the only root [`crate::TestClient::https`] trusts.
    pub root: CertificateDer<'static>,
    /// Server certificate then CA, as a server sends them.
    pub chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
}

impl TestCa {
    pub fn new() -> Self {
        let ca_key = KeyPair::generate().expect("generate CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.distinguished_name.push(DnType::CommonName, "Sluice test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().expect("generate server key");
        let mut server_params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("server params");
        server_params.distinguished_name.push(DnType::CommonName, "sluice test server");
        let server_cert = server_params.signed_by(&server_key, &issuer).expect("sign server certificate");

        TestCa {
            root: ca_cert.der().clone(),
            chain: vec![server_cert.der().clone(), ca_cert.der().clone()],
            key_der: server_key.serialize_der(),
        }
    }

    /// The server's private key (PKCS#8).
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// The acceptor Sluice serves with, built by [`sluice_server::tls::from_der`] (ALPN h2 and
    /// http/1.1).
    pub fn acceptor(&self) -> TlsAcceptor {
        sluice_server::tls::from_der(self.chain.clone(), self.key()).expect("certificate and key form a pair")
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}
