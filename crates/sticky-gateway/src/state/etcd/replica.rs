//! This replica's registration: `PREFIX/replicas/ID` under a lease, with
//! its address, version, applied revision and per-backend session sketches,
//! refreshed every `publish_interval` (never per request). The key goes
//! with the lease: at shutdown (revoked) or when the replica stops
//! renewing it (expired after `lease_ttl`).

use std::sync::Arc;

use base64::Engine as _;
use etcd_client::PutOptions;

use super::keys::ReplicaRecord;
use super::watch::Backoff;
use super::{local_summaries, EtcdSource};
use crate::gateway::Gateway;

/// Runs until the gateway shuts down, then revokes the lease.
pub(super) async fn run(src: Arc<EtcdSource>, gw: Arc<Gateway>) {
    registered(&src, &gw).await;
    src.closed.send_replace(true);
}

async fn registered(src: &Arc<EtcdSource>, gw: &Arc<Gateway>) {
    let stop = gw.shutdown.triggered();
    tokio::pin!(stop);
    let mut backoff = Backoff::new();
    loop {
        let lease = tokio::select! {
            _ = &mut stop => return,
            l = register(src, gw) => l,
        };
        let lease = match lease {
            Ok(id) => id,
            Err(e) => {
                tracing::debug!(error = %e, "etcd: replica registration failed, retrying");
                let wait = backoff.next();
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
        };
        backoff.reset();
        let kept = tokio::select! {
            _ = &mut stop => {
                let mut lc = src.client.lease_client();
                let _ = tokio::time::timeout(src.config.request_timeout, lc.revoke(lease)).await;
                return;
            }
            e = keep(src, gw, lease) => e,
        };
        tracing::debug!(error = %kept, "etcd: replica lease lost, registering again");
    }
}

/// Grants a lease and writes the first record under it.
async fn register(src: &EtcdSource, gw: &Gateway) -> Result<i64, String> {
    let bound = src.config.request_timeout;
    let mut lc = src.client.lease_client();
    let ttl = src.config.lease_ttl.as_secs().max(1) as i64;
    let grant = tokio::time::timeout(bound, lc.grant(ttl, None))
        .await
        .map_err(|_| "lease grant: no answer in time".to_string())?
        .map_err(|e| e.to_string())?;
    put_record(src, gw, grant.id()).await?;
    Ok(grant.id())
}

/// Renews the lease and refreshes the record until either fails.
async fn keep(src: &EtcdSource, gw: &Gateway, lease: i64) -> String {
    let bound = src.config.request_timeout;
    let mut lc = src.client.lease_client();
    let (mut keeper, mut answers) = match tokio::time::timeout(bound, lc.keep_alive(lease)).await {
        Ok(Ok(k)) => k,
        Ok(Err(e)) => return e.to_string(),
        Err(_) => return "keepalive: no answer in time".into(),
    };
    let mut tick = tokio::time::interval(src.config.publish_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            // An intent change applied here: say so now (no lease renewal
            // needed for that).
            _ = src.acknowledge.notified() => {
                if let Err(e) = put_record(src, gw, lease).await {
                    return e;
                }
                continue;
            }
        }
        if let Err(e) = keeper.keep_alive().await {
            return e.to_string();
        }
        match tokio::time::timeout(bound, answers.message()).await {
            Ok(Ok(Some(a))) if a.ttl() > 0 => {}
            Ok(Ok(Some(_))) => return "lease expired".into(),
            Ok(Ok(None)) => return "keepalive stream ended".into(),
            Ok(Err(e)) => return e.to_string(),
            Err(_) => return "keepalive: no answer in time".into(),
        }
        if let Err(e) = put_record(src, gw, lease).await {
            return e;
        }
    }
}

/// Writes this replica's record under `lease`.
async fn put_record(src: &EtcdSource, gw: &Gateway, lease: i64) -> Result<(), String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let sessions = local_summaries(gw, &src.config.route, gw.now_ms())
        .into_iter()
        .map(|(name, s)| (name, b64.encode(s.to_bytes())))
        .collect();
    let record = ReplicaRecord {
        address: src.address.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        applied_revision: src.applied_revision(),
        sessions,
    };
    let json = serde_json::to_string(&record).map_err(|e| e.to_string())?;
    let mut kv = src.client.kv_client();
    tokio::time::timeout(
        src.config.request_timeout,
        kv.put(
            src.layout.replica(&src.replica_id),
            json,
            Some(PutOptions::new().with_lease(lease)),
        ),
    )
    .await
    .map_err(|_| "put: no answer in time".to_string())?
    .map_err(|e| e.to_string())?;
    Ok(())
}
