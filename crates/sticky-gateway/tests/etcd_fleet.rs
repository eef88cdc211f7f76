//! Three replicas fed by one real etcd: a drain through one reaches the
//! others, replicas at the same revision route every token alike, a
//! replica's registration goes with its lease, and the fleet's session
//! estimate merges every replica's sketch.

#![cfg(feature = "etcd")]

mod common;
mod etcd_support;

use std::time::Duration;

use common::admin;
use etcd_support::*;
use tower_sticky::token::KeyRing;

fn stats_store(body: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["store"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_through_one_replica_reaches_the_others_within_a_second() {
    let Some(etcd) = Etcd::start("drain").await else {
        return;
    };
    let mut c = etcd.client().await;
    let prefix = "sticky/drain";
    for (i, n) in ["b1", "b2", "b3"].iter().enumerate() {
        put_backend(&mut c, prefix, n, &format!("127.0.0.1:{}", 1 + i)).await;
    }
    let keys = KeyRing::generate();
    let mut fleet = Vec::new();
    for _ in 0..3 {
        fleet.push(replica(&keys, etcd_config(vec![etcd.url()], prefix)).await);
    }
    for r in &fleet {
        assert_eq!(backends(r).len(), 3, "each replica starts with etcd's set");
    }
    let (a, b, cc) = (&fleet[0], &fleet[1], &fleet[2]);
    // Sessions placed through B and C before the drain, for the fleet estimate.
    for r in [b, cc] {
        for _ in 0..300 {
            assert!(r.gateway.decide("default", &fresh()).is_some());
        }
    }
    let (status, body) = admin(a.admin_addr.unwrap(), "POST", "/backends/b2/drain").await;
    assert_eq!(status, 200, "{body}");
    // Read your writes: A answered only once its own watch applied it.
    assert!(
        backends(a).contains(&("b2".into(), false)),
        "A drains b2 before answering"
    );
    let took = within(Duration::from_secs(1), "B and C drain b2", || {
        [b, cc]
            .iter()
            .all(|r| backends(r).contains(&("b2".into(), false)))
    })
    .await;
    eprintln!("drain reached B and C in {took:?}");
    for r in [b, cc] {
        for i in 0..200 {
            let to = r.gateway.decide("default", &fresh()).unwrap();
            assert_ne!(to, "b2", "a new session placed on draining b2");
            let pinned_to = r
                .gateway
                .decide("default", &pinned(&keys, "b2", i))
                .unwrap();
            assert_eq!(pinned_to, "b2", "a session pinned to b2 stays there");
        }
    }
    // The dashboard's "drain acknowledged by 3 of 3".
    let admin_a = a.admin_addr.unwrap();
    common::eventually(1, "three replicas acknowledge the drain", || async {
        let (_, body) = admin(admin_a, "GET", "/stats").await;
        let s = stats_store(&body);
        let intent = s["intent_revision"].as_u64().unwrap();
        let reps = s["replicas"].as_array().unwrap();
        reps.len() == 3
            && reps
                .iter()
                .all(|r| r["applied_revision"].as_u64().unwrap() >= intent)
    })
    .await;
    // The fleet estimate merges B's and C's sketches: 2 x 500 new sessions,
    // and the 200 pinned to b2 that reached both (counted once).
    common::eventually(
        5,
        "the fleet estimate counts every replica's sessions",
        || async {
            let all = common::admin_backends(admin_a).await;
            let total: u64 = all
                .iter()
                .map(|b| b["fleet_active_sessions"].as_u64().unwrap_or(0))
                .sum();
            let local: u64 = all
                .iter()
                .map(|b| b["active_sessions"].as_u64().unwrap_or(0))
                .sum();
            local == 0 && (1140..=1260).contains(&total)
        },
    )
    .await;
    // A saw no session on b2, but B and C did: A answers for the fleet.
    let (status, body) = admin(admin_a, "GET", "/backends/b2/drained").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"fleet_active_sessions\""), "{body}");
    // Activate through C: everyone takes b2 again.
    let (status, body) = admin(cc.admin_addr.unwrap(), "POST", "/backends/b2/activate").await;
    assert_eq!(status, 200, "{body}");
    within(Duration::from_secs(1), "A and B activate b2", || {
        [a, b]
            .iter()
            .all(|r| backends(r).contains(&("b2".into(), true)))
    })
    .await;
    let (status, _) = admin(a.admin_addr.unwrap(), "POST", "/backends/nope/drain").await;
    assert_eq!(status, 404);
    for r in fleet {
        r.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_at_the_same_revision_route_ten_thousand_tokens_identically() {
    let Some(etcd) = Etcd::start("same").await else {
        return;
    };
    let mut c = etcd.client().await;
    let prefix = "sticky/same";
    let names = ["b1", "b2", "b3", "b4", "b5"];
    for (i, n) in names.iter().enumerate() {
        put_backend(&mut c, prefix, n, &format!("127.0.0.1:{}", 1 + i)).await;
    }
    put_intent(&mut c, prefix, "b2", "draining").await;
    put_intent(&mut c, prefix, "b4", "disabled").await;
    let keys = KeyRing::generate();
    let mut fleet = Vec::new();
    for _ in 0..3 {
        fleet.push(replica(&keys, etcd_config(vec![etcd.url()], prefix)).await);
    }
    let views: Vec<Vec<(String, bool)>> = fleet.iter().map(backends).collect();
    assert!(views.iter().all(|v| *v == views[0]), "{views:?}");
    assert!(
        !views[0].iter().any(|(n, _)| n == "b4"),
        "disabled: not routed"
    );
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut failed_over = 0;
    for _ in 0..10_000 {
        let r = next();
        // Pinned to any backend, the disabled one and an unknown one included.
        let to = ["b1", "b2", "b3", "b4", "b5", "gone"][(r % 6) as usize];
        let head = pinned(&keys, to, next());
        let chosen: Vec<Option<String>> = fleet
            .iter()
            .map(|f| f.gateway.decide("default", &head))
            .collect();
        assert!(
            chosen.iter().all(|x| *x == chosen[0]),
            "token pinned to {to}: {chosen:?}"
        );
        if chosen[0].as_deref() != Some(to) {
            failed_over += 1;
        }
    }
    assert!(
        failed_over > 2_000,
        "tokens of b4 and gone fail over: {failed_over}"
    );
    for r in fleet {
        r.shutdown().await;
    }
}

#[test]
fn a_replica_whose_lease_expires_loses_its_registration() {
    let main = tokio::runtime::Runtime::new().unwrap();
    let other = tokio::runtime::Runtime::new().unwrap();
    let Some(etcd) = main.block_on(Etcd::start("lease")) else {
        return;
    };
    let prefix = "sticky/lease";
    let keys = KeyRing::generate();
    let mut a_conf = etcd_config(vec![etcd.url()], prefix);
    a_conf.replica_id = Some("a".into());
    let mut d_conf = etcd_config(vec![etcd.url()], prefix);
    d_conf.replica_id = Some("d".into());
    let a = main.block_on(replica(&keys, a_conf));
    let _d = other.block_on(replica(&keys, d_conf));
    main.block_on(async {
        let mut c = etcd.client().await;
        common::eventually(5, "both replicas registered", || {
            let mut c = c.clone();
            async move { replica_keys(&mut c, prefix).await.len() == 2 }
        })
        .await;
        let _ = &mut c;
    });
    // Replica d stops dead (no shutdown, no revoke): its lease (2 s)
    // expires and its key goes.
    other.shutdown_background();
    main.block_on(async {
        let c = etcd.client().await;
        let t0 = std::time::Instant::now();
        common::eventually(6, "d's registration expires with its lease", || {
            let mut c = c.clone();
            async move {
                replica_keys(&mut c, prefix).await == vec![format!("{prefix}/replicas/a")]
            }
        })
        .await;
        eprintln!("lease expired after {:?}", t0.elapsed());
        let admin_a = a.admin_addr.unwrap();
        common::eventually(2, "A's dashboard lists one replica", || async {
            let (_, body) = admin(admin_a, "GET", "/stats").await;
            stats_store(&body)["replicas"].as_array().unwrap().len() == 1
        })
        .await;
        // A graceful stop revokes at once.
        a.shutdown().await;
        let mut c = c.clone();
        assert!(replica_keys(&mut c, prefix).await.is_empty());
    });
}
