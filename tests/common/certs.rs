//! Test certificates made with rcgen, written as PEM files into a temporary directory: a CA,
//! certificates it signs for 127.0.0.1 (server and client use alike), and the bad ones the
//! TLS tests need (expired; signed by another CA: make a second [`TestPki`]).
//!
//! Shared by `tests/tls.rs` and the security module's unit tests (included there by path).
#![allow(dead_code)] // each user takes a subset

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate and its key, as files.
#[derive(Clone, Debug)]
pub struct PemPair {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

/// A CA and the files it made; the directory goes when this is dropped.
pub struct TestPki {
    dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (PEM).
    pub ca: PathBuf,
}

impl TestPki {
    /// A fresh CA named `name`, in a new temporary directory.
    pub fn new(name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rcdc-pki-")
            .tempdir()
            .expect("temp dir for certificates");
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-signed CA");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, cert.pem()).expect("write CA");
        Self {
            dir,
            issuer: Issuer::new(params, key),
            ca,
        }
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A certificate for 127.0.0.1 and localhost with subject CN `cn`, good for a server and a
    /// client, valid from 1975 to 4096; written as `<name>.pem` and `<name>-key.pem`.
    pub fn issue(&self, name: &str, cn: &str) -> PemPair {
        self.issue_with(name, cn, |_| {})
    }

    /// Like [`issue`](Self::issue), but it expired on 2001-01-01.
    pub fn issue_expired(&self, name: &str, cn: &str) -> PemPair {
        self.issue_with(name, cn, |p| {
            p.not_before = rcgen::date_time_ymd(2000, 1, 1);
            p.not_after = rcgen::date_time_ymd(2001, 1, 1);
        })
    }

    fn issue_with(
        &self,
        name: &str,
        cn: &str,
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> PemPair {
        let key = KeyPair::generate().expect("leaf key");
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        adjust(&mut params);
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        let pair = PemPair {
            cert: self.dir.path().join(format!("{name}.pem")),
            key: self.dir.path().join(format!("{name}-key.pem")),
        };
        std::fs::write(&pair.cert, cert.pem()).expect("write certificate");
        std::fs::write(&pair.key, key.serialize_pem()).expect("write key");
        pair
    }

    /// Writes `text` as `<name>` in the directory (for malformed-file cases).
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }
}
