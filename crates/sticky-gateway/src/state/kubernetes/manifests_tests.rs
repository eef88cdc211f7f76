//! `deploy/kubernetes/` parses, and its pieces fit together: the RBAC grants
//! what the watcher asks for, the gateway's flags name the Service and port
//! that exist, the hook outlasts the idle timeout. No cluster applies them
//! here; this is what can be checked without one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize as _;
use serde_yaml::Value;

fn folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes")
}

/// Every document of every `.yaml` file.
fn documents() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder())
        .expect("deploy/kubernetes exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut docs = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("readable manifest");
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{file}: not YAML: {e}"));
            docs.push((file.clone(), v));
        }
    }
    docs
}

fn find<'a>(docs: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .map(|(_, v)| v)
        .find(|v| v["kind"] == kind && v["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

#[test]
fn every_manifest_is_an_object_in_the_namespace() {
    let docs = documents();
    for (file, v) in &docs {
        assert!(v["apiVersion"].is_string(), "{file}: apiVersion");
        assert!(v["kind"].is_string(), "{file}: kind");
        assert!(v["metadata"]["name"].is_string(), "{file}: metadata.name");
        if v["kind"] != "Namespace" {
            assert_eq!(
                v["metadata"]["namespace"], "shop",
                "{file}: {:?}",
                v["metadata"]
            );
        }
        // Key material is never in a file that `kubectl apply -f` applies.
        assert_ne!(v["kind"], "Secret", "{file}: Secrets are created by hand");
    }
}

#[test]
fn the_role_grants_what_the_watcher_needs() {
    let docs = documents();
    let role = find(&docs, "Role", "sticky-gateway-endpointslices");
    let rules = role["rules"].as_sequence().expect("rules");
    let rule = rules
        .iter()
        .find(|r| {
            r["resources"]
                .as_sequence()
                .is_some_and(|s| s.iter().any(|x| x == "endpointslices"))
        })
        .expect("a rule on endpointslices");
    assert_eq!(rule["apiGroups"][0], "discovery.k8s.io");
    let verbs: Vec<&str> = rule["verbs"]
        .as_sequence()
        .expect("verbs")
        .iter()
        .map(str_of)
        .collect();
    assert_eq!(verbs, vec!["get", "list", "watch"]);
    let binding = find(&docs, "RoleBinding", "sticky-gateway-endpointslices");
    assert_eq!(binding["subjects"][0]["name"], "sticky-gateway");
    let gateway = find(&docs, "Deployment", "sticky-gateway");
    assert_eq!(
        gateway["spec"]["template"]["spec"]["serviceAccountName"],
        "sticky-gateway"
    );
}

#[test]
fn the_gateway_names_a_service_and_port_that_exist() {
    let docs = documents();
    let gateway = find(&docs, "Deployment", "sticky-gateway");
    let args: Vec<&str> = gateway["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(str_of)
        .collect();
    let flag = |name: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("--{name}=")))
            .unwrap_or_else(|| panic!("no --{name}"))
    };
    let service = find(&docs, "Service", flag("kube-service"));
    let port = flag("kube-port");
    assert!(
        service["spec"]["ports"]
            .as_sequence()
            .expect("ports")
            .iter()
            .any(|p| p["name"] == port),
        "the Service has no port {port}"
    );
    assert_eq!(flag("kube-namespace"), "$(POD_NAMESPACE)");
}

/// The gateway's TOML (in its ConfigMap) uses only fields the gateway
/// knows, and the backend's grace period outlasts its idle timeout.
#[test]
fn the_hook_outlasts_the_idle_timeout() {
    let docs = documents();
    let config = find(&docs, "ConfigMap", "sticky-gateway");
    let toml_text = str_of(&config["data"]["sticky.toml"]);
    let raw: crate::config::RawConfig =
        toml::from_str(toml_text).expect("the ConfigMap's sticky.toml is a gateway config");
    let idle = raw.routes[0]
        .session_persistence
        .idle_timeout
        .as_deref()
        .expect("an idle timeout, so 'drained' can be reached");
    let idle = crate::config::parse::parse_duration(idle).expect("a duration");
    assert_eq!(raw.admin_open_reads, Some(true), "the hook sends no token");

    let web = find(&docs, "Deployment", "web");
    let pod = &web["spec"]["template"]["spec"];
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("a grace period");
    assert!(
        Duration::from_secs(grace) > idle + Duration::from_secs(60),
        "grace {grace}s must outlast the idle timeout {idle:?} with a margin"
    );
    let hook = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][2]
        .as_str()
        .expect("a preStop script");
    assert!(hook.contains("/backends/$POD_NAME/drained"), "{hook}");
    assert!(hook.contains("sticky-gateway-admin.shop.svc"), "{hook}");
    let admin = find(&docs, "Service", "sticky-gateway-admin");
    assert_eq!(
        admin["spec"]["clusterIP"], "None",
        "headless: every replica is asked"
    );
}

/// Each object read into its k8s-openapi type and written back comes out
/// the same: a misspelt or misplaced field (which the type would drop) or a
/// value of the wrong type fails here, not on `kubectl apply`.
#[test]
fn every_object_round_trips_through_its_kubernetes_type() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};

    fn same<T: serde::de::DeserializeOwned + serde::Serialize>(
        file: &str,
        json: serde_json::Value,
    ) {
        let typed: T = serde_json::from_value(json.clone())
            .unwrap_or_else(|e| panic!("{file}: {} {e}", json["kind"]));
        let back = serde_json::to_value(&typed).expect("serialisable");
        assert_eq!(
            back, json,
            "{file}: {} changed on the way through its type",
            json["kind"]
        );
    }
    for (file, v) in documents() {
        let json = serde_json::to_value(&v).expect("YAML that is JSON");
        match v["kind"].as_str().unwrap_or_default() {
            "Deployment" => same::<Deployment>(&file, json),
            "Service" => same::<Service>(&file, json),
            "ConfigMap" => same::<ConfigMap>(&file, json),
            "Namespace" => same::<Namespace>(&file, json),
            "ServiceAccount" => same::<ServiceAccount>(&file, json),
            "Role" => same::<Role>(&file, json),
            "RoleBinding" => same::<RoleBinding>(&file, json),
            other => panic!("{file}: no check for kind {other}"),
        }
    }
}

/// The gateway's command line, with its ConfigMap's file, is one the
/// gateway accepts: the flags feed the file's route from the Service.
#[test]
fn the_gateway_args_and_file_start_a_fed_route() {
    use clap::Parser as _;
    let docs = documents();
    let config = find(&docs, "ConfigMap", "sticky-gateway");
    let dir = std::env::temp_dir().join(format!("sticky-manifest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let file = dir.join("sticky.toml");
    std::fs::write(&file, str_of(&config["data"]["sticky.toml"])).expect("writable");
    let gateway = find(&docs, "Deployment", "sticky-gateway");
    let mut argv = vec!["sticky-gateway".to_owned()];
    for a in gateway["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_sequence()
        .expect("args")
    {
        let a = str_of(a);
        argv.push(if a.starts_with("--config=") {
            format!("--config={}", file.display())
        } else {
            a.replace("$(POD_NAMESPACE)", "shop")
        });
    }
    let action = crate::cli::Cli::try_parse_from(&argv)
        .expect("flags parse")
        .action();
    let _ = std::fs::remove_dir_all(&dir);
    let crate::cli::Action::Run { config, .. } = action.expect("a valid configuration") else {
        panic!("not a run")
    };
    let k = config.kubernetes.as_ref().expect("a Kubernetes source");
    assert_eq!(k.service, "web");
    assert_eq!(k.namespace.as_deref(), Some("shop"));
    assert_eq!(k.port, crate::config::KubePort::Name("http".into()));
    assert_eq!(k.route, config.routes[0].name);
}
