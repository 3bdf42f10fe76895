use std::sync::Arc;
use std::time::Duration;

use super::*;

#[path = "../../tests/common/certs.rs"]
mod certs;
use certs::TestPki;

#[test]
fn every_bad_file_is_named_with_its_flag() {
    let pki = TestPki::new("rcdc test CA");
    let good = pki.issue("server", "pd");
    let text = pki.write("text.pem", "not a certificate\n");
    let missing = pki.dir().join("missing.pem");

    let e = CaFile::load(&missing).unwrap_err().to_string();
    assert!(
        e.starts_with("cannot read CA file (--ca) ") && e.contains("missing.pem"),
        "{e}"
    );
    let e = CaFile::load(&text).unwrap_err().to_string();
    assert!(
        e.contains("CA file (--ca)") && e.contains("text.pem: no PEM certificate"),
        "{e}"
    );
    let e = OwnIdentity::load(&text, &good.key).unwrap_err().to_string();
    assert!(
        e.contains("certificate file (--cert)") && e.contains("text.pem"),
        "{e}"
    );
    let e = OwnIdentity::load(&good.cert, &text)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("key file (--key)") && e.contains("no PEM private key"),
        "{e}"
    );
    let other = pki.issue("other", "pd");
    let e = OwnIdentity::load(&good.cert, &other.key)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("other-key.pem does not belong to certificate"),
        "{e}"
    );
    let old = pki.issue_expired("old", "pd");
    let e = OwnIdentity::load(&old.cert, &old.key)
        .unwrap_err()
        .to_string();
    assert!(e.contains("old.pem: the certificate expired at"), "{e}");
}

/// A server from [`CaFile::server_config`] negotiates the ALPN protocol the client offers and
/// refuses clients without a certificate its CA signed; [`handshake_verdict`] names each case.
#[tokio::test]
async fn the_server_config_requires_a_client_certificate_the_ca_signed() {
    let pki = TestPki::new("rcdc test CA");
    let ca = CaFile::load(&pki.ca).expect("CA");
    let server_id = pki.issue("server", "pd");
    let server_id = OwnIdentity::load(&server_id.cert, &server_id.key).expect("identity");
    let config = ca
        .server_config(&server_id, &[b"h2", b"http/1.1"])
        .expect("server config");
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = tcp.local_addr().expect("addr").port();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let (alpn_tx, mut alpn_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = tcp.accept().await else {
                return;
            };
            let (acceptor, alpn_tx) = (acceptor.clone(), alpn_tx.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    let _ = alpn_tx.send(tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec));
                    // Answer, so that the client's read ends with data, not a refusal.
                    use tokio::io::AsyncWriteExt;
                    let mut tls = tls;
                    let _ = tls.write_all(b"x").await;
                }
            });
        }
    });
    let verdict = |config: rustls::ClientConfig, presented: bool| {
        handshake_verdict(
            Arc::new(config),
            presented,
            "127.0.0.1",
            port,
            b"",
            Duration::from_secs(5),
        )
    };
    let client_id = pki.issue("client", "cdc");
    let client_id = OwnIdentity::load(&client_id.cert, &client_id.key).expect("identity");
    let good = ca
        .client_config(Some(&client_id), &[b"h2"])
        .expect("client");
    assert_eq!(
        verdict(good, true).await,
        None,
        "a CA-signed client is served"
    );
    assert_eq!(alpn_rx.recv().await.flatten().as_deref(), Some(&b"h2"[..]));

    let anonymous = ca.client_config(None, &[b"http/1.1"]).expect("client");
    assert_eq!(
        verdict(anonymous, false).await,
        Some(TlsFailure::ClientCertificateRequired)
    );

    let stranger = TestPki::new("another CA");
    let stranger_id = stranger.issue("stranger", "cdc");
    let stranger_id = OwnIdentity::load(&stranger_id.cert, &stranger_id.key).expect("identity");
    let foreign = ca.client_config(Some(&stranger_id), &[]).expect("client");
    assert_eq!(
        verdict(foreign, true).await,
        Some(TlsFailure::ClientCertificateRefused {
            alert: "UnknownCA".into()
        })
    );
    let distrusting = CaFile::load(&stranger.ca)
        .expect("CA")
        .client_config(Some(&stranger_id), &[])
        .expect("client");
    assert_eq!(
        verdict(distrusting, true).await,
        Some(TlsFailure::UnknownAuthority)
    );
}
