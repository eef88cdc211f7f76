//! Admin writes: operator intent stored with compare-and-set, answered once
//! this replica's own watch has applied the write (read your writes).

use std::sync::Arc;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};

use super::keys::{intent_json, parse_intent};
use super::EtcdSource;
use crate::state::{AdminState, IntentError};

/// Attempts before giving up on a key others keep changing.
const ATTEMPTS: usize = 3;

fn unavailable(e: impl std::fmt::Display) -> IntentError {
    IntentError::Unavailable(format!("etcd: {e}"))
}

/// Stores `state` for `backend` and waits until this replica applied it.
pub(super) async fn set(
    src: Arc<EtcdSource>,
    backend: String,
    state: AdminState,
) -> Result<u64, IntentError> {
    match src.knows(&backend) {
        Some(true) => {}
        Some(false) => return Err(IntentError::UnknownBackend),
        None => return Err(unavailable("not read yet since start")),
    }
    let bound = src.config.request_timeout;
    let key = src.layout.intent(&backend);
    let mut kv = src.client.kv_client();
    for _ in 0..ATTEMPTS {
        let cur = tokio::time::timeout(bound, kv.get(key.as_str(), None))
            .await
            .map_err(|_| unavailable("no answer in time"))?
            .map_err(unavailable)?;
        let (mod_rev, now) = match cur.kvs().first() {
            Some(k) => (
                k.mod_revision(),
                parse_intent(k.value()).unwrap_or_default(),
            ),
            None => (0, AdminState::Active),
        };
        let revision = if now == state {
            // Already so: nothing to write; wait for what was read.
            cur.header().map_or(0, |h| h.revision()).max(0) as u64
        } else {
            let op = match intent_json(state) {
                Some(json) => TxnOp::put(key.as_str(), json, None),
                None => TxnOp::delete(key.as_str(), None),
            };
            // Only if nobody changed the key since it was read: two
            // dashboards clicking at once never lose one of the clicks
            // silently.
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.as_str(),
                    CompareOp::Equal,
                    mod_rev,
                )])
                .and_then([op]);
            let resp = tokio::time::timeout(bound, kv.txn(txn))
                .await
                .map_err(|_| unavailable("no answer in time"))?
                .map_err(unavailable)?;
            if !resp.succeeded() {
                continue;
            }
            resp.header().map_or(0, |h| h.revision()).max(0) as u64
        };
        let mut applied = src.applied.subscribe();
        return match tokio::time::timeout(bound, applied.wait_for(|r| *r >= revision)).await {
            Ok(Ok(_)) => Ok(revision),
            _ => Err(IntentError::NotApplied(revision)),
        };
    }
    Err(IntentError::Conflict)
}
