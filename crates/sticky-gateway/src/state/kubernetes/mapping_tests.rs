//! The mapping table, row by row, with plain values.

use super::*;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use AdminState::{Active, Draining};

/// Shared with the watcher's tests: the objects a cluster would hold.
pub(crate) fn cond(
    ready: Option<bool>,
    serving: Option<bool>,
    terminating: Option<bool>,
) -> EndpointConditions {
    EndpointConditions {
        ready,
        serving,
        terminating,
    }
}

pub(crate) fn pod(name: &str, ip: &str, c: EndpointConditions) -> Endpoint {
    Endpoint {
        addresses: vec![ip.to_owned()],
        conditions: Some(c),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            name: Some(name.to_owned()),
            ..ObjectReference::default()
        }),
        ..Endpoint::default()
    }
}

pub(crate) fn ready_pod(name: &str, ip: &str) -> Endpoint {
    pod(name, ip, cond(Some(true), Some(true), Some(false)))
}

pub(crate) fn http_port(name: &str, number: i32) -> EndpointPort {
    EndpointPort {
        name: Some(name.to_owned()),
        port: Some(number),
        protocol: Some("TCP".into()),
        ..EndpointPort::default()
    }
}

pub(crate) fn slice(name: &str, endpoints: Vec<Endpoint>) -> EndpointSlice {
    slice_with_ports(name, endpoints, vec![http_port("http", 8080)])
}

pub(crate) fn slice_with_ports(
    name: &str,
    endpoints: Vec<Endpoint>,
    ports: Vec<EndpointPort>,
) -> EndpointSlice {
    EndpointSlice {
        address_type: "IPv4".into(),
        endpoints,
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        ports: Some(ports),
    }
}

fn states(m: &Mapping) -> Vec<(&str, AdminState)> {
    m.snapshot
        .backends
        .iter()
        .map(|(n, b)| (n.as_str(), b.state))
        .collect()
}

#[test]
fn every_combination_of_conditions_follows_the_table() {
    let all = [None, Some(true), Some(false)];
    for ready in all {
        for serving in all {
            for terminating in all {
                let r = ready.unwrap_or(true);
                let s = serving.unwrap_or(r);
                let t = terminating.unwrap_or(false);
                let expected = match (r, s, t) {
                    (_, true, true) => Some(Draining),
                    (_, false, true) => None,
                    (true, _, false) => Some(Active),
                    (false, _, false) => None,
                };
                let c = cond(ready, serving, terminating);
                assert_eq!(
                    endpoint_state(Some(&c)),
                    expected,
                    "ready {ready:?} serving {serving:?} terminating {terminating:?}"
                );
            }
        }
    }
}

#[test]
fn nil_conditions_read_as_kep_1672_says() {
    // No conditions at all: ready, not terminating.
    assert_eq!(endpoint_state(None), Some(Active));
    assert_eq!(endpoint_state(Some(&cond(None, None, None))), Some(Active));
    // Nil serving defers to ready, for a terminating endpoint.
    assert_eq!(
        endpoint_state(Some(&cond(Some(false), None, Some(true)))),
        None
    );
    assert_eq!(
        endpoint_state(Some(&cond(None, None, Some(true)))),
        Some(Draining)
    );
    // Nil terminating is not terminating.
    assert_eq!(
        endpoint_state(Some(&cond(Some(false), Some(true), None))),
        None
    );
}

#[test]
fn named_rows() {
    let ready = cond(Some(true), Some(true), Some(false));
    let draining = cond(Some(false), Some(true), Some(true));
    let shutting_down = cond(Some(false), Some(false), Some(true));
    let starting = cond(Some(false), Some(false), Some(false));
    assert_eq!(endpoint_state(Some(&ready)), Some(Active));
    assert_eq!(endpoint_state(Some(&draining)), Some(Draining));
    assert_eq!(endpoint_state(Some(&shutting_down)), None);
    assert_eq!(endpoint_state(Some(&starting)), None);
    // Terminating wins over a stale ready: no new sessions on a pod going away.
    let odd = cond(Some(true), Some(true), Some(true));
    assert_eq!(endpoint_state(Some(&odd)), Some(Draining));
}

#[test]
fn a_service_maps_to_its_pods() {
    let s = slice(
        "web-abc",
        vec![
            ready_pod("web-a", "10.0.0.1"),
            pod(
                "web-b",
                "10.0.0.2",
                cond(Some(false), Some(true), Some(true)),
            ),
            pod(
                "web-c",
                "10.0.0.3",
                cond(Some(false), Some(false), Some(true)),
            ),
            pod("web-d", "10.0.0.4", cond(Some(false), None, None)),
        ],
    );
    let m = map_slices([&s], &PortSelector::Only);
    assert_eq!(states(&m), vec![("web-a", Active), ("web-b", Draining)]);
    assert!(!m.all_draining_placeable);
    assert!(m.skipped.is_empty(), "{:?}", m.skipped);
    let a = &m.snapshot.backends["web-a"];
    assert_eq!(a.address, "10.0.0.1:8080");
    assert_eq!(a.weight, 1);
    assert_eq!(m.snapshot.backends["web-b"].address, "10.0.0.2:8080");
}

#[test]
fn when_every_backend_drains_they_stay_placeable() {
    let draining = cond(Some(false), Some(true), Some(true));
    let s = slice(
        "web-abc",
        vec![
            pod("web-a", "10.0.0.1", draining.clone()),
            pod("web-b", "10.0.0.2", draining.clone()),
            // Starting, not ready: not in the set, so it does not count.
            pod("web-new", "10.0.0.9", cond(Some(false), Some(false), None)),
        ],
    );
    let m = map_slices([&s], &PortSelector::Only);
    assert!(m.all_draining_placeable);
    assert_eq!(states(&m), vec![("web-a", Active), ("web-b", Active)]);

    // One ready pod is enough: the others go back to draining.
    let s = slice(
        "web-abc",
        vec![
            pod("web-a", "10.0.0.1", draining.clone()),
            pod("web-b", "10.0.0.2", draining),
            ready_pod("web-new", "10.0.0.9"),
        ],
    );
    let m = map_slices([&s], &PortSelector::Only);
    assert!(!m.all_draining_placeable);
    assert_eq!(
        states(&m),
        vec![
            ("web-a", Draining),
            ("web-b", Draining),
            ("web-new", Active)
        ]
    );
}

#[test]
fn an_empty_service_is_an_empty_set() {
    let m = map_slices([], &PortSelector::Only);
    assert!(m.snapshot.backends.is_empty());
    assert!(!m.all_draining_placeable);
    let empty = slice("web-abc", vec![]);
    let m = map_slices([&empty], &PortSelector::Name("nope".into()));
    assert!(m.snapshot.backends.is_empty());
    assert!(m.skipped.is_empty(), "an empty slice is not an error");
}

#[test]
fn the_backend_name_falls_back_to_hostname_then_address() {
    let mut by_host = ready_pod("ignored", "10.0.0.1");
    by_host.target_ref = None;
    by_host.hostname = Some("web-0".into());
    let mut by_addr = ready_pod("ignored", "10.0.0.2");
    by_addr.target_ref = None;
    let mut empty_ref_name = ready_pod("", "10.0.0.3");
    empty_ref_name.hostname = None;
    let s = slice("web-abc", vec![by_host, by_addr, empty_ref_name]);
    let m = map_slices([&s], &PortSelector::Only);
    let names: Vec<&str> = m.snapshot.backends.keys().map(String::as_str).collect();
    assert_eq!(names, vec!["10.0.0.2", "10.0.0.3", "web-0"]);
}

#[test]
fn ports_are_chosen_by_name_or_number() {
    let ports = vec![
        http_port("metrics", 9090),
        http_port("http", 8080),
        EndpointPort {
            name: Some("dns".into()),
            port: Some(53),
            protocol: Some("UDP".into()),
            ..EndpointPort::default()
        },
    ];
    let s = slice_with_ports("web-abc", vec![ready_pod("web-a", "10.0.0.1")], ports);
    let addr = |sel: PortSelector| {
        let m = map_slices([&s], &sel);
        (
            m.snapshot.backends.get("web-a").map(|b| b.address.clone()),
            m.skipped,
        )
    };
    assert_eq!(
        addr(PortSelector::Name("http".into())).0.as_deref(),
        Some("10.0.0.1:8080")
    );
    assert_eq!(
        addr(PortSelector::Number(9090)).0.as_deref(),
        Some("10.0.0.1:9090")
    );
    // UDP ports are never chosen.
    let (none, skipped) = addr(PortSelector::Number(53));
    assert_eq!(none, None);
    assert_eq!(skipped, vec!["slice web-abc: no TCP port 53".to_owned()]);
    // Two TCP ports and no choice: skipped, not guessed.
    let (none, skipped) = addr(PortSelector::Only);
    assert_eq!(none, None);
    assert!(skipped[0].contains("2 TCP ports"), "{skipped:?}");

    // A nil protocol is TCP; an unnamed port has the empty name.
    let unnamed = EndpointPort {
        port: Some(3000),
        ..EndpointPort::default()
    };
    let s = slice_with_ports(
        "web-abc",
        vec![ready_pod("web-a", "10.0.0.1")],
        vec![unnamed],
    );
    let m = map_slices([&s], &PortSelector::Name(String::new()));
    assert_eq!(m.snapshot.backends["web-a"].address, "10.0.0.1:3000");
}

#[test]
fn ports_out_of_range_are_unusable() {
    for bad in [None, Some(0), Some(-1), Some(70_000)] {
        let p = EndpointPort {
            name: Some("http".into()),
            port: bad,
            ..EndpointPort::default()
        };
        let s = slice_with_ports("web-abc", vec![ready_pod("web-a", "10.0.0.1")], vec![p]);
        let m = map_slices([&s], &PortSelector::Only);
        assert!(m.snapshot.backends.is_empty(), "{bad:?}");
        assert_eq!(m.skipped.len(), 1, "{bad:?}");
    }
}

#[test]
fn two_service_ports_on_one_pod_port_are_one_port() {
    let ports = vec![http_port("http", 8080), http_port("alt", 8080)];
    let s = slice_with_ports("web-abc", vec![ready_pod("web-a", "10.0.0.1")], ports);
    let m = map_slices([&s], &PortSelector::Only);
    assert_eq!(m.snapshot.backends["web-a"].address, "10.0.0.1:8080");
    assert!(m.skipped.is_empty());
}

#[test]
fn fqdn_addresses_are_used_as_host_names() {
    let mut s = slice(
        "web-fqdn",
        vec![ready_pod("web-a", "web-a.example.internal")],
    );
    s.address_type = "FQDN".into();
    let m = map_slices([&s], &PortSelector::Only);
    assert_eq!(
        m.snapshot.backends["web-a"].address,
        "web-a.example.internal:8080"
    );
}

#[test]
fn ipv6_addresses_are_bracketed() {
    let mut s = slice("web-v6", vec![ready_pod("web-a", "fd00::1")]);
    s.address_type = "IPv6".into();
    let m = map_slices([&s], &PortSelector::Only);
    assert_eq!(m.snapshot.backends["web-a"].address, "[fd00::1]:8080");
}

#[test]
fn unusable_endpoints_are_skipped_and_reported() {
    let mut no_address = ready_pod("web-a", "10.0.0.1");
    no_address.addresses.clear();
    let mut empty_address = ready_pod("web-b", "");
    empty_address.addresses = vec![String::new()];
    let bad_address = ready_pod("web-c", "not an address");
    let s = slice(
        "web-abc",
        vec![
            no_address,
            empty_address,
            bad_address,
            ready_pod("web-d", "10.0.0.4"),
        ],
    );
    let m = map_slices([&s], &PortSelector::Only);
    assert_eq!(states(&m), vec![("web-d", Active)]);
    assert_eq!(m.skipped.len(), 3, "{:?}", m.skipped);
}

#[test]
fn a_pod_in_two_slices_is_one_backend_whatever_the_order() {
    let draining = cond(Some(false), Some(true), Some(true));
    let one = slice("web-1", vec![pod("web-a", "10.0.0.1", draining)]);
    let two = slice("web-2", vec![ready_pod("web-a", "10.0.0.1")]);
    let ab = map_slices([&one, &two], &PortSelector::Only);
    let ba = map_slices([&two, &one], &PortSelector::Only);
    assert_eq!(ab, ba);
    assert_eq!(states(&ab), vec![("web-a", Active)], "active wins");

    // Same state: the smaller address wins.
    let x = slice("web-1", vec![ready_pod("web-a", "10.0.0.9")]);
    let y = slice("web-2", vec![ready_pod("web-a", "10.0.0.1")]);
    let xy = map_slices([&x, &y], &PortSelector::Only);
    assert_eq!(xy, map_slices([&y, &x], &PortSelector::Only));
    assert_eq!(xy.snapshot.backends["web-a"].address, "10.0.0.1:8080");
}

#[test]
fn the_revision_is_a_digest_of_the_set() {
    let a = slice("web-1", vec![ready_pod("web-a", "10.0.0.1")]);
    let b = slice("web-2", vec![ready_pod("web-b", "10.0.0.2")]);
    let r = map_slices([&a, &b], &PortSelector::Only).snapshot.revision;
    assert_ne!(r, 0);
    // Order-free, and blind to what the gateway does not use.
    assert_eq!(
        map_slices([&b, &a], &PortSelector::Only).snapshot.revision,
        r
    );
    let mut a2 = a.clone();
    a2.metadata.resource_version = Some("99".into());
    a2.endpoints[0].zone = Some("zone-b".into());
    assert_eq!(
        map_slices([&a2, &b], &PortSelector::Only).snapshot.revision,
        r
    );
    // Any change to the set changes it.
    let drained = slice(
        "web-1",
        vec![pod(
            "web-a",
            "10.0.0.1",
            cond(Some(false), Some(true), Some(true)),
        )],
    );
    assert_ne!(
        map_slices([&drained, &b], &PortSelector::Only)
            .snapshot
            .revision,
        r
    );
    let moved = slice("web-1", vec![ready_pod("web-a", "10.0.0.7")]);
    assert_ne!(
        map_slices([&moved, &b], &PortSelector::Only)
            .snapshot
            .revision,
        r
    );
    assert_ne!(map_slices([&a], &PortSelector::Only).snapshot.revision, r);
}

#[test]
fn port_selector_parses_names_and_numbers() {
    assert_eq!("http".parse(), Ok(PortSelector::Name("http".into())));
    assert_eq!("8080".parse(), Ok(PortSelector::Number(8080)));
    assert!("0".parse::<PortSelector>().is_err());
    assert!("65536".parse::<PortSelector>().is_err());
    assert!("".parse::<PortSelector>().is_err());
}
