//! EndpointSlices to a [`Snapshot`], as plain code: no client, no I/O, so
//! every row of the condition table is tested with plain values.
//!
//! The rules, and why:
//!
//! | ready | serving | terminating | backend |
//! |---|---|---|---|
//! | true or nil | any | false or nil | [`AdminState::Active`] |
//! | false | any | false or nil | absent (a starting pod, or a failing readiness probe) |
//! | any | true, or nil with ready true or nil | true | [`AdminState::Draining`] |
//! | any | false, or nil with ready false | true | absent (shutting down and no longer serving) |
//!
//! Nil conditions read as KEP-1672 says: nil `ready` is ready, nil
//! `serving` defers to `ready`, nil `terminating` is not terminating. A
//! terminating endpoint is never placed on while another can be, even if it
//! still says `ready`: the pod is going away, so its pinned sessions stay and
//! new ones go elsewhere. A non-terminating endpoint follows `ready` alone
//! (for it, `serving` equals `ready` by definition).
//!
//! If every backend of the set is draining (a rollout that deletes the old
//! pods before the new ones are ready), the draining backends are mapped
//! [`AdminState::Active`] and [`Mapping::all_draining_placeable`] says so:
//! new users are placed on pods that still serve rather than answered 503,
//! which is what kube-proxy does since Kubernetes 1.26 (KEP-1669). Once one
//! backend is ready again, the others go back to draining.
//!
//! A backend's name (the stable id tokens carry) is the pod's name
//! (`targetRef.name`), which lives as long as the pod and, for a
//! StatefulSet, across its restarts. Without a `targetRef` it is the
//! endpoint's `hostname`, else its first address. Its address is
//! `addresses[0]:PORT` (an IPv6 address in brackets), the port chosen by
//! [`PortSelector`]. Its weight is 1: EndpointSlices carry none.
//!
//! A pod listed by two slices (the EndpointSlice controller moves endpoints
//! between slices as they fill up) yields one backend: the entry with the
//! better state wins (active over draining), then the smaller address, so the
//! result does not depend on the order the slices arrive in.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use k8s_openapi::api::discovery::v1::{EndpointConditions, EndpointSlice};

use crate::config::parse::check_address;
use crate::state::{AdminState, BackendEntry, Snapshot};

/// Which of a slice's ports the gateway connects to. A Service may expose
/// several (http, metrics, grpc); only one is the application's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PortSelector {
    /// The slice's only TCP port. A slice with several TCP ports is skipped
    /// (and reported): guessing would send users to a metrics port.
    #[default]
    Only,
    /// The port with this name: the Service port's name, which its
    /// EndpointSlices repeat.
    Name(String),
    /// The port with this number: the pod's port (the Service's
    /// `targetPort`), the number EndpointSlices list.
    Number(u16),
}

impl FromStr for PortSelector {
    type Err = String;

    /// A number is a [`PortSelector::Number`], anything else a
    /// [`PortSelector::Name`]: the command line's `--kube-port NAME|NUMBER`.
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("empty port: give a port name or number".into());
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return match s.parse::<u16>() {
                Ok(0) | Err(_) => Err(format!("port {s:?} is not in 1..=65535")),
                Ok(n) => Ok(Self::Number(n)),
            };
        }
        Ok(Self::Name(s.to_owned()))
    }
}

impl fmt::Display for PortSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Only => f.write_str("the only port"),
            Self::Name(n) => write!(f, "port {n:?}"),
            Self::Number(n) => write!(f, "port {n}"),
        }
    }
}

/// The outcome of mapping a Service's slices: the snapshot, and what the
/// operator should hear about (logged by the watcher).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mapping {
    /// The backend set. Its revision is a digest of the set (see
    /// [`revision_of`]).
    pub snapshot: Snapshot,
    /// Every backend was draining, so they were mapped active to keep
    /// placing new users rather than answering 503.
    pub all_draining_placeable: bool,
    /// Slices and endpoints left out because their data could not be used
    /// (no matching port, no address, an address that is not `HOST:PORT`),
    /// one line each.
    pub skipped: Vec<String>,
}

/// What one endpoint's conditions make of it: `Some(state)`, or `None` when
/// it must not be routed at all. The table is in the module docs.
pub fn endpoint_state(conditions: Option<&EndpointConditions>) -> Option<AdminState> {
    let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
    let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
    let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
    if terminating {
        serving.then_some(AdminState::Draining)
    } else {
        ready.then_some(AdminState::Active)
    }
}

/// Maps all EndpointSlices of one Service to a [`Snapshot`] (rules in the
/// module docs). The slices may come in any order; equal sets give equal
/// snapshots, revision included, on every replica.
pub fn map_slices<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    port: &PortSelector,
) -> Mapping {
    let mut slices: Vec<&EndpointSlice> = slices.into_iter().collect();
    slices.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut backends: BTreeMap<String, BackendEntry> = BTreeMap::new();
    let mut skipped = Vec::new();
    for slice in slices {
        map_slice(slice, port, &mut backends, &mut skipped);
    }
    let all_draining_placeable =
        !backends.is_empty() && backends.values().all(|b| b.state == AdminState::Draining);
    if all_draining_placeable {
        for b in backends.values_mut() {
            b.state = AdminState::Active;
        }
    }
    let revision = revision_of(&backends);
    Mapping {
        snapshot: Snapshot { revision, backends },
        all_draining_placeable,
        skipped,
    }
}

fn map_slice(
    slice: &EndpointSlice,
    port: &PortSelector,
    backends: &mut BTreeMap<String, BackendEntry>,
    skipped: &mut Vec<String>,
) {
    let slice_name = slice.metadata.name.as_deref().unwrap_or("<unnamed>");
    let number = match choose_port(slice, port) {
        Ok(n) => n,
        Err(why) => {
            // An empty slice (a Service with no pods yet) has nothing to skip.
            if !slice.endpoints.is_empty() {
                skipped.push(format!("slice {slice_name}: {why}"));
            }
            return;
        }
    };
    for endpoint in &slice.endpoints {
        let Some(state) = endpoint_state(endpoint.conditions.as_ref()) else {
            continue;
        };
        let Some(ip) = endpoint.addresses.first().filter(|a| !a.is_empty()) else {
            skipped.push(format!("slice {slice_name}: an endpoint has no address"));
            continue;
        };
        let address = if ip.parse::<Ipv6Addr>().is_ok() {
            format!("[{ip}]:{number}")
        } else {
            format!("{ip}:{number}")
        };
        if let Err(why) = check_address(&address) {
            skipped.push(format!("slice {slice_name}: {why}"));
            continue;
        }
        let pod_name = endpoint.target_ref.as_ref().and_then(|r| r.name.as_deref());
        let name = [pod_name, endpoint.hostname.as_deref()]
            .into_iter()
            .flatten()
            .find(|n| !n.is_empty())
            .unwrap_or(ip)
            .to_owned();
        let entry = BackendEntry {
            address,
            weight: 1,
            state,
        };
        match backends.get_mut(&name) {
            Some(held) if !better(&entry, held) => {}
            Some(held) => *held = entry,
            None => {
                backends.insert(name, entry);
            }
        }
    }
}

/// Whether `a` beats `b` for the same backend name: active over draining,
/// then the smaller address; an order-free rule, so replicas agree.
fn better(a: &BackendEntry, b: &BackendEntry) -> bool {
    let rank = |s: AdminState| match s {
        AdminState::Active => 0u8,
        AdminState::Draining => 1,
        AdminState::Disabled => 2,
    };
    (rank(a.state), &a.address) < (rank(b.state), &b.address)
}

/// The slice's port number per `selector`: TCP ports only (nil protocol is
/// TCP), with a number in 1..=65535.
fn choose_port(slice: &EndpointSlice, selector: &PortSelector) -> Result<u16, String> {
    let tcp = slice
        .ports
        .iter()
        .flatten()
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP");
    let usable = |p: &k8s_openapi::api::discovery::v1::EndpointPort| {
        p.port
            .and_then(|n| u16::try_from(n).ok())
            .filter(|&n| n != 0)
    };
    let mut found: Vec<u16> = match selector {
        PortSelector::Only => tcp.filter_map(usable).collect(),
        PortSelector::Name(name) => tcp
            .filter(|p| p.name.as_deref().unwrap_or("") == name)
            .filter_map(usable)
            .collect(),
        PortSelector::Number(n) => tcp.filter_map(usable).filter(|p| p == n).collect(),
    };
    // Two Service ports may target one pod port: that is one port here.
    found.sort_unstable();
    found.dedup();
    match (found.as_slice(), selector) {
        ([n], _) => Ok(*n),
        ([], _) => Err(format!("no TCP {selector}")),
        (_, PortSelector::Only) => Err(format!(
            "{} TCP ports; choose one by name or number",
            found.len()
        )),
        // Two numbers under one name cannot come from a valid Service; take
        // the smallest so that the result is still the same on every replica.
        ([n, ..], _) => Ok(*n),
    }
}

/// A snapshot's revision: a 64-bit FNV-1a digest of the backend set (name,
/// address, weight, state, in name order), never 0.
///
/// Why not a resourceVersion: Kubernetes resourceVersions are opaque and
/// per object (clients must not compare them), and a set of slices has no
/// single one. A digest of the set itself gives what the revision is for:
/// replicas holding the same set show the same revision, however and in
/// whatever order their events came, and a change to a slice that leaves
/// the backends as they were (topology hints, a port the gateway does not
/// use) yields no new snapshot.
pub fn revision_of(backends: &BTreeMap<String, BackendEntry>) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for (name, b) in backends {
        // Lengths first, so no two sets share an encoding.
        eat(&(name.len() as u64).to_le_bytes());
        eat(name.as_bytes());
        eat(&(b.address.len() as u64).to_le_bytes());
        eat(b.address.as_bytes());
        eat(&b.weight.to_le_bytes());
        eat(&(b.state.as_str().len() as u64).to_le_bytes());
        eat(b.state.as_str().as_bytes());
    }
    h.max(1)
}

#[cfg(test)]
#[path = "mapping_tests.rs"]
pub(crate) mod tests;
