//! TLS certificates reloaded (file change, SIGHUP) without dropping
//! established connections, and bad PEM files: exit 2 naming the file at
//! start, the last good certificate kept on reload.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::tls::*;
use common::*;
use http::StatusCode;
use sticky_gateway::tls::throwaway::Issued;
use sticky_gateway::tls::CertificateFiles;

const LIMIT: Duration = Duration::from_secs(30);

/// Waits until a new connection to `addr` is served `want`.
async fn served(addr: SocketAddr, want: &Issued, what: &str) {
    eventually(10, what, || async {
        match connect(addr, "app.test", any_cert()).await {
            Ok(s) => leaf(&s) == want.cert_der,
            Err(_) => false,
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_certificate_file_is_served_to_new_connections_and_a_bad_one_is_not() {
    tokio::time::timeout(LIMIT, async {
        let a = Backend::start("a").await;
        let ca = ca();
        let dir = scratch("watch");
        let (old, new) = (
            ca.issue(&["app.test"]).unwrap(),
            ca.issue(&["app.test"]).unwrap(),
        );
        let files = write_files(&dir, "site", &old);
        let gw = tls_gateway(&[&a], vec![files.clone()]).await;
        let tls = gw.tls_addrs[0];

        // An established connection, with a request done on it.
        let s = connect(tls, "app.test", any_cert()).await.unwrap();
        assert_eq!(leaf(&s), old.cert_der);
        let mut kept = http1(s).await;
        let (r, _) = collect(
            kept.send_request(get_request("app.test", "/", None))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);

        write_files(&dir, "site", &new);
        served(tls, &new, "the rewritten certificate is served").await;
        // The established connection carries on.
        let (r, _) = collect(
            kept.send_request(get_request("app.test", "/", None))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);

        // A bad file: the error names it; the certificate in use stays.
        std::fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
        let e = gw.certs[0].reload().unwrap_err();
        assert_eq!(e.file, files.cert, "{e}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let s = connect(tls, "app.test", any_cert()).await.unwrap();
        assert_eq!(leaf(&s), new.cert_der, "the last good certificate stays");
        gw.shutdown().await;
    })
    .await
    .expect("bounded");
}

fn config_file(
    dir: &Path,
    tls: SocketAddr,
    site: &CertificateFiles,
    backend: &Backend,
) -> std::path::PathBuf {
    let p = dir.join("gateway.toml");
    std::fs::write(
        &p,
        format!(
            "file_watch_interval = \"0s\"\n\
             [[tls_listeners]]\nlisten = \"{tls}\"\n\
             [[tls_listeners.certificates]]\ncert = \"{}\"\nkey = \"{}\"\n\
             [[routes]]\n{}",
            site.cert.display(),
            site.key.display(),
            backends_toml([backend])
        ),
    )
    .unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_the_certificate_for_new_connections_while_an_established_one_keeps_working() {
    tokio::time::timeout(LIMIT, async {
        let a = Backend::start("a").await;
        let ca = ca();
        let dir = scratch("sighup");
        let (old, new) = (
            ca.issue(&["app.test"]).unwrap(),
            ca.issue(&["app.test"]).unwrap(),
        );
        let site = write_files(&dir, "site", &old);
        let tls = free_addr();
        // File polling off: only SIGHUP can make the swap.
        let conf = config_file(&dir, tls, &site, &a);
        let gw =
            GatewayProcess::start(&["--config", conf.to_str().unwrap()], dir.join("gw.log")).await;
        eventually(10, "the TLS listener accepts", || async {
            tokio::net::TcpStream::connect(tls).await.is_ok()
        })
        .await;

        let s = connect(tls, "app.test", trusting(&ca.cert_der, &["h2"]))
            .await
            .unwrap();
        assert_eq!(leaf(&s), old.cert_der);
        let mut kept = http2(s).await;
        let (r, _) = collect(
            kept.send_request(get_request("app.test", "/", None))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);

        write_files(&dir, "site", &new);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let s = connect(tls, "app.test", any_cert()).await.unwrap();
        assert_eq!(
            leaf(&s),
            old.cert_der,
            "no reload without SIGHUP when polling is off"
        );
        gw.signal("-HUP");
        served(tls, &new, "the certificate swapped by SIGHUP is served").await;
        // The connection made before the swap still carries requests.
        for _ in 0..3 {
            let (r, _) = collect(
                kept.send_request(get_request("app.test", "/", None))
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(r.status, StatusCode::OK);
            assert_eq!(r.backend(), "a");
        }
        // A bad file on SIGHUP: logged, naming the file; the last good one stays.
        std::fs::write(&site.key, "garbage").unwrap();
        gw.signal("-HUP");
        eventually(10, "the failed reload is logged", || async {
            gw.logs().contains("certificate reload failed")
        })
        .await;
        let logs = gw.logs();
        assert!(logs.contains(site.key.to_str().unwrap()), "{logs}");
        let s = connect(tls, "app.test", any_cert()).await.unwrap();
        assert_eq!(leaf(&s), new.cert_der);
        let (r, _) = collect(
            kept.send_request(get_request("app.test", "/", None))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
    })
    .await
    .expect("bounded");
}

#[test]
fn bad_pem_files_exit_2_naming_the_file() {
    let ca = ca();
    let dir = scratch("badpem");
    let good = write_files(&dir, "good", &ca.issue(&["app.test"]).unwrap());
    let other = write_files(&dir, "other", &ca.issue(&["app.test"]).unwrap());
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "this is not PEM\n").unwrap();
    let truncated = dir.join("truncated.pem");
    let pem = std::fs::read_to_string(&good.cert).unwrap();
    std::fs::write(&truncated, &pem[..pem.len() / 2]).unwrap();
    let missing = dir.join("missing.key");
    let p = |x: &Path| x.to_str().unwrap().to_string();
    for (cert, key, file, reason) in [
        (
            p(&junk),
            p(&good.key),
            p(&junk),
            "no CERTIFICATE block found",
        ),
        (p(&truncated), p(&good.key), p(&truncated), "invalid PEM"),
        // A certificate where the key belongs.
        (
            p(&good.cert),
            p(&good.cert),
            p(&good.cert),
            "no PRIVATE KEY block found",
        ),
        (p(&good.cert), p(&missing), p(&missing), "cannot read"),
        (
            p(&good.cert),
            p(&other.key),
            p(&other.key),
            "does not match the certificate",
        ),
    ] {
        let (code, err) = run_bounded(&[
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--backend",
            "a=127.0.0.1:1",
        ]);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains(&format!("{file}: ")), "names {file}: {err}");
        assert!(err.contains(reason), "{reason}: {err}");
    }
    // A second certificate without its key is a usage error too.
    let (code, err) = run_bounded(&[
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        &p(&good.cert),
        "--tls-key",
        &p(&good.key),
        "--tls-cert",
        &p(&other.cert),
        "--backend",
        "a=127.0.0.1:1",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--tls-key"), "{err}");
}
