//! Serve and pull over real TLS on loopback: the pinned certificate, a wrong certificate, a
//! server that stalls, and answers that are not a bundle.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::time::Duration;

use chrono::{TimeZone, Utc};
use otgate_sync::bundle::{Body, Bundle, Header};
use otgate_sync::net::tls::{generate_cert, load_certs, load_key, server_config};
use otgate_sync::net::{pull, CertPin, PullError};
use otgate_sync::AuthorityKey;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

fn bundle(site: &str, version: u64) -> Vec<u8> {
    let mut bundle = Bundle::new(Body {
        header: Header {
            site: site.into(),
            version,
            issued_at: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
            not_before: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
            expires_at: Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
            previous_hash: None,
            grace_period_secs: 0,
        },
        policy: format!("# version {version}\n"),
        trust_root: None,
    })
    .unwrap();
    bundle
        .sign(&AuthorityKey::from_secret([1; 32], None))
        .unwrap();
    bundle.encode()
}

struct Hq {
    url: String,
    pin: CertPin,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Hq {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start_hq() -> Hq {
    let dir = tempfile::tempdir().unwrap();
    let made = generate_cert(&["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = dir.path().join("hq.crt");
    let key = dir.path().join("hq-tls.key");
    std::fs::write(&cert, &made.cert_pem).unwrap();
    std::fs::write(&key, &made.key_pem).unwrap();
    let bundles = dir.path().join("bundles");
    std::fs::create_dir(&bundles).unwrap();
    std::fs::write(bundles.join("a-2.otgb"), bundle("plant-a", 2)).unwrap();
    std::fs::write(bundles.join("a-7.otgb"), bundle("plant-a", 7)).unwrap();
    std::fs::write(bundles.join("a-5.otgb"), bundle("plant-a", 5)).unwrap();
    std::fs::write(bundles.join("b-9.otgb"), bundle("plant-b", 9)).unwrap();
    std::fs::write(bundles.join("junk.otgb"), b"not a bundle").unwrap();
    let config = server_config(load_certs(&cert).unwrap(), load_key(&key).unwrap()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(otgate_sync::net::serve(listener, config, bundles, async {
        let _ = stopped.await;
    }));
    Hq {
        url,
        pin: made.pin,
        _dir: dir,
        stop: Some(stop),
    }
}

#[tokio::test]
async fn pull_fetches_the_newest_bundle_of_the_site_with_the_pinned_certificate() {
    let hq = start_hq().await;
    let bytes = pull(&hq.url, "plant-a", hq.pin, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(bytes, bundle("plant-a", 7));
    let bytes = pull(&hq.url, "plant-b", hq.pin, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(bytes, bundle("plant-b", 9));
}

#[tokio::test]
async fn an_unknown_site_is_a_404() {
    let hq = start_hq().await;
    match pull(&hq.url, "plant-z", hq.pin, Duration::from_secs(10)).await {
        Err(PullError::Status {
            status: 404, path, ..
        }) => assert_eq!(path, "/sites/plant-z/latest"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_server_with_the_wrong_certificate_is_refused_naming_both_pins() {
    let hq = start_hq().await;
    let pinned = generate_cert(&["localhost".into()]).unwrap().pin;
    match pull(&hq.url, "plant-a", pinned, Duration::from_secs(10)).await {
        Err(PullError::WrongCertificate {
            expected, offered, ..
        }) => {
            assert_eq!(expected, pinned);
            assert_eq!(offered, hq.pin);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_server_that_stalls_times_out() {
    // Accepts TCP and then says nothing at all.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let held = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(socket);
    });
    let deadline = Duration::from_millis(300);
    match pull(&url, "plant-a", CertPin([0; 32]), deadline).await {
        Err(PullError::TimedOut { after, .. }) => assert_eq!(after, deadline),
        other => panic!("unexpected {other:?}"),
    }
    held.abort();
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_before_reading_it() {
    // A TLS server that answers with a huge Content-Length and no body.
    let made = generate_cert(&["127.0.0.1".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert, &made.cert_pem).unwrap();
    std::fs::write(&key, &made.key_pem).unwrap();
    let config = server_config(load_certs(&cert).unwrap(), load_key(&key).unwrap()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let mut tls = tokio_rustls::TlsAcceptor::from(config)
            .accept(socket)
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let _ = tokio::io::AsyncReadExt::read(&mut tls, &mut buf).await;
        tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n")
            .await
            .unwrap();
        let _ = tls.shutdown().await;
    });
    match pull(&url, "plant-a", made.pin, Duration::from_secs(10)).await {
        Err(PullError::Oversized {
            size: 999_999_999_999,
            ..
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
    server.await.unwrap();
}
