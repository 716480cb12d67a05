//! `wss://` and `https://` backends: the scripted implementation behind a real TLS server on
//! loopback (rustls, with a certificate authority and a server certificate the test makes).
//! A certificate the bridge does not trust is refused; a private CA given by `--backend-ca-file`
//! is trusted; `--backend-tls-insecure` accepts anything (for test setups).

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use onebot_bridge::config::{Config, FileConfig, Overrides};
use onebot_bridge::Bridge;
use serde_json::json;
use support::*;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;

struct Pki {
    ca_pem: String,
    server: rustls::ServerConfig,
}

/// A CA, and a server certificate it signs for 127.0.0.1 and localhost.
fn pki() -> Pki {
    let pki = support::pki::TestPki::new();
    Pki { server: pki.server_config(), ca_pem: pki.ca_pem }
}

/// A TLS server on loopback that hands each decrypted connection to `target` (plain TCP), and
/// counts completed handshakes.
struct TlsFront {
    addr: SocketAddr,
    handshakes: Arc<AtomicUsize>,
}

async fn tls_front(server: rustls::ServerConfig, target: SocketAddr) -> TlsFront {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let handshakes = Arc::new(AtomicUsize::new(0));
    let counted = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let counted = counted.clone();
            tokio::spawn(async move {
                let Ok(Ok(mut tls)) = tokio::time::timeout(WAIT, acceptor.accept(tcp)).await else { return };
                counted.fetch_add(1, Ordering::SeqCst);
                let Ok(mut plain) = TcpStream::connect(target).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    TlsFront { addr, handshakes }
}

fn backend_addr(backend: &FakeBackend) -> SocketAddr {
    let url = url::Url::parse(&backend.url()).unwrap();
    format!("{}:{}", url.host_str().unwrap(), url.port().unwrap()).parse().unwrap()
}

fn temp_pem(name: &str, pem: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ob-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ca.pem");
    std::fs::write(&path, pem).unwrap();
    path
}

async fn bridge(o: Overrides) -> Bridge {
    Bridge::start(Config::resolve(FileConfig::default(), o).unwrap()).await.unwrap()
}

#[tokio::test]
async fn a_wss_backend_signed_by_a_private_ca_works_with_its_ca_file() {
    let pki = pki();
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let front = tls_front(pki.server, backend_addr(&backend)).await;
    let ca = temp_pem("wss", &pki.ca_pem);
    let bridge = bridge(Overrides {
        backend_ws: vec![format!("wss://127.0.0.1:{}/", front.addr.port())],
        backend_ca_file: Some(ca.clone()),
        ws: vec!["127.0.0.1:0".into()],
        ephemeral: true,
        ..Default::default()
    })
    .await;
    let mut bot = Bot::connect_when_up(bridge.ws_addrs()[0]).await;
    backend.push(v12_message(
        "private",
        "10001",
        json!({"message_id": "t1", "user_id": "7", "message": [{"type": "text", "data": {"text": "over TLS"}}]}),
    ));
    assert_eq!(bot.next_event().await["message"], "over TLS");
    assert!(front.handshakes.load(Ordering::SeqCst) >= 1);
    let _ = std::fs::remove_dir_all(ca.parent().unwrap());
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_and_the_link_stays_down() {
    let pki = pki();
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let front = tls_front(pki.server, backend_addr(&backend)).await;
    let bridge = bridge(Overrides {
        backend_ws: vec![format!("wss://127.0.0.1:{}/", front.addr.port())],
        http: vec!["127.0.0.1:0".into()],
        ephemeral: true,
        ..Default::default()
    })
    .await;
    // The bridge dials, and dials again after back-off, but never completes a handshake.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(front.handshakes.load(Ordering::SeqCst), 0, "the bridge must not accept an unknown CA");
    drop(bridge);
}

#[tokio::test]
async fn an_https_backend_works_with_its_ca_and_insecure_mode_accepts_anything() {
    let pki = pki();
    let backend = FakeBackend::start_http(BackendOptions::default()).await;
    let front = tls_front(pki.server.clone(), backend_addr(&backend)).await;
    let ca = temp_pem("https", &pki.ca_pem);
    let url = format!("https://127.0.0.1:{}/", front.addr.port());
    for overrides in [
        Overrides { backend_http: vec![url.clone()], backend_ca_file: Some(ca.clone()), ..Default::default() },
        Overrides { backend_http: vec![url.clone()], backend_tls_insecure: true, ..Default::default() },
    ] {
        let bridge = bridge(Overrides { ws: vec!["127.0.0.1:0".into()], ephemeral: true, ..overrides }).await;
        let mut bot = Bot::connect_when_up(bridge.ws_addrs()[0]).await;
        let answer = bot.call("get_login_info", json!({})).await;
        assert_eq!(answer["retcode"], 0, "{answer}");
        drop(bot);
        drop(bridge);
    }
    assert!(front.handshakes.load(Ordering::SeqCst) >= 2);
    let _ = std::fs::remove_dir_all(ca.parent().unwrap());
}
