//! etcd going away and coming back: replicas keep serving their last
//! snapshot (through a hung and a dead server), admin writes answer 503,
//! the watch resumes after a restart, a compacted watch relists without a
//! spurious change, and a replica boots from its cache while etcd is down.

#![cfg(feature = "etcd")]

mod common;
mod etcd_support;

use std::time::Duration;

use common::{admin, Backend};
use etcd_client::CompactionOptions;
use etcd_support::*;
use tower_sticky::token::KeyRing;

async fn store(r: &sticky_gateway::run::Running) -> serde_json::Value {
    let (_, body) = admin(r.admin_addr.unwrap(), "GET", "/stats").await;
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["store"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_keep_serving_while_etcd_is_hung_or_dead_and_resume_after() {
    let Some(mut etcd) = Etcd::start("outage").await else {
        return;
    };
    let mut c = etcd.client().await;
    let prefix = "sticky/outage";
    let b1 = Backend::start("b1").await;
    put_backend(&mut c, prefix, "b1", &b1.addr.to_string()).await;
    let keys = KeyRing::generate();
    let mut fleet = Vec::new();
    for _ in 0..3 {
        fleet.push(replica(&keys, etcd_config(vec![etcd.url()], prefix)).await);
    }
    let serve_all = |fleet: &Vec<sticky_gateway::run::Running>| {
        let addrs: Vec<_> = fleet.iter().map(|r| r.addr).collect();
        async move {
            for a in addrs {
                let r = common::get(a, "/", None).await;
                assert_eq!(r.status, 200, "served");
                assert_eq!(r.backend(), "b1");
            }
        }
    };
    serve_all(&fleet).await;

    // Hung: connections open, nothing answers.
    etcd.pause();
    let (status, body) = admin(fleet[0].admin_addr.unwrap(), "POST", "/backends/b1/drain").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("intent not stored"), "{body}");
    serve_all(&fleet).await;
    for r in &fleet {
        let a = r.admin_addr.unwrap();
        common::eventually(6, "the replica shows etcd disconnected", || async move {
            let (_, m) = admin(a, "GET", "/metrics").await;
            m.contains("sticky_store_connected{engine=\"etcd\",route=\"default\"} 0")
        })
        .await;
    }
    assert!(
        backends(&fleet[1]).contains(&("b1".into(), true)),
        "no local-only drain"
    );
    etcd.resume();
    for r in &fleet {
        common::eventually(8, "connected again after SIGCONT", || async {
            store(r).await["connected"] == true
        })
        .await;
    }

    // Dead: connections refused.
    etcd.kill();
    let (status, body) = admin(fleet[1].admin_addr.unwrap(), "POST", "/backends/b1/drain").await;
    assert_eq!(status, 503, "{body}");
    serve_all(&fleet).await;
    let s = store(&fleet[2]).await;
    assert!(s["last_sync_age_seconds"].as_f64().is_some(), "{s}");

    // Back on the same data directory: every watch resumes.
    etcd.restart().await;
    let mut c = etcd.client().await;
    put_backend(&mut c, prefix, "b2", "127.0.0.1:2").await;
    for r in &fleet {
        within(
            Duration::from_secs(8),
            "the new backend reaches every replica",
            || backends(r).len() == 2,
        )
        .await;
    }
    for r in fleet {
        r.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_watch_relists_without_a_spurious_change() {
    let Some(etcd) = Etcd::start("compact").await else {
        return;
    };
    let mut c = etcd.client().await;
    let prefix = "sticky/compact";
    put_backend(&mut c, prefix, "b1", "127.0.0.1:1").await;
    put_backend(&mut c, prefix, "b2", "127.0.0.1:2").await;
    // The replica reaches etcd through a link the test can cut.
    let link = Cut::start(etcd.client_port).await;
    let keys = KeyRing::generate();
    let r = replica(&keys, etcd_config(vec![link.url()], prefix)).await;
    let before = store(&r).await;
    let snap_rev = before["snapshot_revision"].as_u64().unwrap();
    assert!(snap_rev > 0, "{before}");
    link.cut();
    common::eventually(6, "the replica sees the link down", || async {
        store(&r).await["connected"] == false
    })
    .await;
    // Meanwhile: an intent set and taken back, and other keys written:
    // history moves on, the backend set ends where it was. Then compact.
    put_intent(&mut c, prefix, "b1", "draining").await;
    c.delete(format!("{prefix}/intent/b1"), None).await.unwrap();
    c.put(format!("{prefix}/unrelated"), "x", None)
        .await
        .unwrap();
    let head = c
        .put(format!("{prefix}/unrelated"), "y", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    c.compact(head, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    link.restore();
    common::eventually(10, "the replica relists and catches up", || async {
        let s = store(&r).await;
        s["connected"] == true && s["revision"].as_u64().unwrap() >= head as u64
    })
    .await;
    let after = store(&r).await;
    assert_eq!(
        after["snapshot_revision"].as_u64().unwrap(),
        snap_rev,
        "same backend set: nothing re-applied ({after})"
    );
    assert_eq!(backends(&r), vec![("b1".into(), true), ("b2".into(), true)]);
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_boots_from_its_cache_while_etcd_is_down() {
    let Some(mut etcd) = Etcd::start("cache").await else {
        return;
    };
    let mut c = etcd.client().await;
    let prefix = "sticky/cache";
    put_backend(&mut c, prefix, "b1", "127.0.0.1:1").await;
    put_backend(&mut c, prefix, "b2", "127.0.0.1:2").await;
    put_intent(&mut c, prefix, "b2", "draining").await;
    let keys = KeyRing::generate();
    let dir = etcd.dir.join("state");
    let mut conf = etcd_config(vec![etcd.url()], prefix);
    conf.state_dir = Some(dir.clone());
    let first = replica(&keys, conf.clone()).await;
    assert!(dir.join("etcd-default.json").is_file(), "cache written");
    first.shutdown().await;
    etcd.kill();

    let r = replica(&keys, conf).await;
    assert_eq!(
        backends(&r),
        vec![("b1".into(), true), ("b2".into(), false)],
        "the cached set, draining included"
    );
    let s = store(&r).await;
    assert_eq!(s["stale"], true, "{s}");
    assert_eq!(s["connected"], false, "{s}");
    let (status, _) = admin(r.admin_addr.unwrap(), "POST", "/backends/b1/drain").await;
    assert_eq!(status, 503);
    etcd.restart().await;
    common::eventually(8, "etcd confirms the cache", || async {
        let s = store(&r).await;
        s["connected"] == true && s["stale"] == false
    })
    .await;
    r.shutdown().await;
}
