//! Brokers behind TLS, as `service install --public-url https://...` deploys them: a real
//! TLS-terminating proxy (tokio-rustls, with a certificate rcgen makes for "localhost") in
//! front of the in-process broker. Members join over https:// and talk over wss://, trusting
//! the certificate through CLAUDEMESH_CA_FILE; a certificate nobody vouches for is refused.

use crate::common;

use claudemesh::client::config::Home;
use claudemesh::client::{enroll, Dest};
use claudemesh::proto::Priority;
use common::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::SocketAddr;
use std::sync::Arc;

fn cert() -> (CertificateDer<'static>, PrivateKeyDer<'static>, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    (ck.cert.der().clone(), key, ck.cert.pem())
}

/// Accept TLS on `listener` and relay the plaintext to `target`.
fn tls_proxy(
    listener: tokio::net::TcpListener,
    target: SocketAddr,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) {
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut up) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
}

/// A broker whose public URL is `https://localhost:<proxy port>`, behind a TLS proxy
/// presenting `cert`.
async fn mesh_behind_tls(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> Mesh {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mesh = Mesh::start_with(|c| c.public_url = format!("https://localhost:{port}")).await;
    tls_proxy(listener, mesh.server().addr, cert, key);
    mesh
}

#[tokio::test]
async fn members_join_over_https_and_message_over_wss_through_a_tls_proxy_and_strangers_are_refused(
) {
    // One trusted certificate for the whole process (the TLS config is built once).
    let (trusted, trusted_key, pem) = cert();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    std::env::set_var("CLAUDEMESH_CA_FILE", &ca);

    let mesh = mesh_behind_tls(trusted, trusted_key).await;
    assert!(mesh.invite.contains("claudemesh://join/"));
    let (alice, bob) = (mesh.member("alice").await, mesh.member("bob").await);
    assert!(
        alice.mc.broker.starts_with("https://localhost:"),
        "{}",
        alice.mc.broker
    );
    assert!(alice.mc.ws_url().starts_with("wss://localhost:"));
    let (a, b) = (alice.connect().await, bob.connect().await);
    a.send(&[Dest::parse("bob")], "over TLS", Priority::Now, None)
        .await
        .unwrap();
    let m = next_message(&b, WAIT)
        .await
        .expect("bob gets the DM over wss");
    assert_eq!((m.text.as_str(), m.from.as_str()), ("over TLS", "alice"));

    // A proxy with a certificate the client does not trust: refused, clearly.
    let (stranger, stranger_key, _) = cert();
    let other = mesh_behind_tls(stranger, stranger_key).await;
    let home = Home {
        dir: dir.path().join("home-eve"),
    };
    let e = enroll::join(&home, &other.invite, "eve")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("TLS") && e.to_lowercase().contains("certificate"),
        "{e}"
    );
    assert!(
        home.load().map(|c| c.meshes.is_empty()).unwrap_or(true),
        "nothing saved"
    );
}
