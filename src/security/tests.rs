use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::*;

#[path = "../../tests/common/certs.rs"]
mod certs;
use certs::{PemPair, TestPki};

fn config(ca: &Path, pair: Option<&PemPair>) -> SecurityConfig {
    SecurityConfig {
        ca_path: Some(ca.to_owned()),
        cert_path: pair.map(|p| p.cert.clone()),
        key_path: pair.map(|p| p.key.clone()),
        cert_allowed_cn: vec![],
    }
}

fn load_err(c: &SecurityConfig) -> String {
    c.load(Role::Server)
        .expect_err("should be refused")
        .to_string()
}

#[test]
fn settings_that_go_together_are_checked_before_reading_anything() {
    let cert_only = SecurityConfig {
        ca_path: Some("/no/ca.pem".into()),
        cert_path: Some("/no/c.pem".into()),
        ..Default::default()
    };
    assert!(cert_only
        .check(Role::Client)
        .unwrap_err()
        .to_string()
        .contains("--cert and --key"));
    let no_ca = SecurityConfig {
        cert_allowed_cn: vec!["x".into()],
        ..Default::default()
    };
    assert!(no_ca
        .check(Role::Server)
        .unwrap_err()
        .to_string()
        .contains("need --ca"));
    let ca_only = SecurityConfig {
        ca_path: Some("/no/ca.pem".into()),
        ..Default::default()
    };
    assert!(
        ca_only.check(Role::Client).is_ok(),
        "a client may go without a certificate"
    );
    assert!(ca_only
        .check(Role::Server)
        .unwrap_err()
        .to_string()
        .contains("to serve HTTPS"));
    let plain = SecurityConfig::default().load(Role::Server).expect("plain");
    assert!(!plain.is_tls());
    assert_eq!(plain.api_url("h:1", "/status"), "http://h:1/status");
    assert!(plain.client_tls_config().is_none());
    assert!(plain.server_config().expect("plain").is_none());
}

#[test]
fn every_bad_file_is_named_in_its_error() {
    let pki = TestPki::new("rcdc test CA");
    let good = pki.issue("server", "capture");
    let other = pki.issue("other", "capture");
    let missing = pki.dir().join("missing.pem");
    let text = pki.write("text.pem", "not a certificate\n");

    let e = load_err(&config(&missing, Some(&good)));
    assert!(
        e.starts_with("cannot read CA file (--ca) ") && e.contains("missing.pem"),
        "{e}"
    );
    let e = load_err(&config(&text, Some(&good)));
    assert!(
        e.contains("CA file (--ca)") && e.contains("text.pem: no PEM certificate"),
        "{e}"
    );
    let e = load_err(&config(
        &pki.ca,
        Some(&PemPair {
            cert: text.clone(),
            key: good.key.clone(),
        }),
    ));
    assert!(
        e.contains("certificate file (--cert)") && e.contains("text.pem"),
        "{e}"
    );
    let e = load_err(&config(
        &pki.ca,
        Some(&PemPair {
            cert: good.cert.clone(),
            key: text.clone(),
        }),
    ));
    assert!(
        e.contains("key file (--key)") && e.contains("no PEM private key"),
        "{e}"
    );
    let e = load_err(&config(
        &pki.ca,
        Some(&PemPair {
            cert: good.cert.clone(),
            key: other.key.clone(),
        }),
    ));
    assert!(
        e.contains("other-key.pem does not belong to certificate") && e.contains("server.pem"),
        "{e}"
    );

    let expired = pki.issue_expired("old", "capture");
    let e = load_err(&config(&pki.ca, Some(&expired)));
    assert!(e.contains("old.pem: the certificate expired at"), "{e}");

    let security = config(&pki.ca, Some(&good))
        .load(Role::Server)
        .expect("good files");
    assert!(security.is_tls());
    assert_eq!(
        security.api_url("127.0.0.1:8300", "/status"),
        "https://127.0.0.1:8300/status"
    );
    assert!(security.client_tls_config().is_some());
    assert!(security.server_config().expect("server config").is_some());
}

#[test]
fn the_allow_list_matches_the_subject_cn() {
    let pki = TestPki::new("rcdc test CA");
    let pair = pki.issue("cli", "rcdc-cli");
    let der = CertificateDer::from_pem_file(&pair.cert).expect("der");
    assert_eq!(common_names(&der), vec!["rcdc-cli".to_owned()]);

    let mut c = config(&pki.ca, Some(&pair));
    let any = c.load(Role::Server).expect("load");
    assert!(
        any.allows(&["whoever".into()]),
        "an empty list allows every CA-signed client"
    );
    c.cert_allowed_cn = vec!["rcdc-cli".into(), "ops".into()];
    let listed = c.load(Role::Server).expect("load");
    assert!(listed.allows(&["ops".into()]));
    assert!(!listed.allows(&["intruder".into()]));
    assert!(
        !listed.allows(&[]),
        "a certificate without a CN is not on the list"
    );
    assert!(Security::plain().allows(&[]));
}

/// A client identity loaded without the start-time validity check, to present an expired
/// certificate as a careless client would.
fn unchecked_client(ca: &Path, pair: &PemPair) -> Security {
    let mut security = config(ca, None).load(Role::Client).expect("CA");
    let tls = Arc::get_mut(security.tls.as_mut().expect("tls")).expect("sole owner");
    let (cert_pem, key_pem) = (
        std::fs::read(&pair.cert).unwrap(),
        std::fs::read(&pair.key).unwrap(),
    );
    tls.identity = Some(OwnIdentity {
        chain: vec![CertificateDer::from_pem_slice(&cert_pem).unwrap()],
        key: PrivateKeyDer::from_pem_slice(&key_pem).unwrap(),
        cert_pem,
        key_pem,
    });
    security
}

/// One HTTPS server (the real listener and server config) and each kind of client: the
/// handshake outcome, and the failure as the client's error names it.
#[tokio::test]
async fn the_https_listener_admits_only_clients_the_ca_signed() {
    let pki = TestPki::new("rcdc test CA");
    let stranger_pki = TestPki::new("another CA");
    let server = config(&pki.ca, Some(&pki.issue("server", "capture")))
        .load(Role::Server)
        .expect("server");
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = tcp.local_addr().expect("addr").to_string();
    let listener = https::TlsListener::new(tcp, server.server_config().unwrap().unwrap()).unwrap();
    let app =
        axum::Router::new().route(
            "/who",
            axum::routing::get(
                |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<
                    https::ClientPeer,
                >| async move { peer.common_names.join(",") },
            ),
        );
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<https::ClientPeer>(),
        )
        .await
    });
    let url = format!("https://{addr}/who");
    let get = |security: Security| {
        let url = url.clone();
        async move {
            let client = security
                .http_client(Duration::from_secs(5))
                .expect("client");
            client.get(url).send().await
        }
    };

    let allowed = config(&pki.ca, Some(&pki.issue("cli", "rcdc-cli")))
        .load(Role::Client)
        .unwrap();
    let answer = get(allowed).await.expect("an allowed client is served");
    assert_eq!(
        answer.text().await.unwrap(),
        "rcdc-cli",
        "the route sees the client's CN"
    );

    let cases = [
        (
            config(&pki.ca, None).load(Role::Client).unwrap(),
            TlsFailure::ClientCertificateRequired,
        ),
        (
            config(&stranger_pki.ca, Some(&stranger_pki.issue("s", "capture")))
                .load(Role::Client)
                .unwrap(),
            TlsFailure::UnknownAuthority,
        ),
        (
            unchecked_client(&pki.ca, &stranger_pki.issue("s2", "capture")),
            TlsFailure::ClientCertificateRefused {
                alert: "UnknownCA".into(),
            },
        ),
        (
            unchecked_client(&pki.ca, &pki.issue_expired("old", "capture")),
            TlsFailure::ClientCertificateExpired,
        ),
    ];
    for (i, (client, want)) in cases.into_iter().enumerate() {
        let e = get(client.clone()).await.expect_err("refused");
        // TLS 1.3 may hide the server's refusal from the request: the probe finds it.
        let error = api_tls_failure(&client, &addr, &e)
            .await
            .expect("a TLS failure");
        assert_eq!(
            (error.service, error.endpoint.as_str()),
            (Service::Api, addr.as_str())
        );
        assert_eq!(error.failure, want, "case {i}: {e:?}");
    }
}
