//! The Helm chart, linted and rendered by the real Helm v4 library (PyPI's helm-python-sdk,
//! through `tests/chart/helm.py`), with the values files in `tests/chart/`. Every rendered
//! object is checked against its kind's Kubernetes schema: it must deserialize into the
//! k8s-openapi type and serialize back unchanged, so a misplaced or misspelt field fails.
//!
//! `SUBORG_HELM_PYTHON` names a Python that has helm-python-sdk (`.ci/run` makes one); without
//! it these tests say so and pass.

use std::collections::BTreeMap;
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

struct Rendered {
    lint: Value,
    /// Template path → rendered text.
    manifests: BTreeMap<String, String>,
}

impl Rendered {
    /// Every object, in template order.
    fn objects(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for (path, text) in &self.manifests {
            if path.ends_with("NOTES.txt") {
                continue;
            }
            for doc in serde_yaml::Deserializer::from_str(text) {
                let v: Value = Value::deserialize(doc)
                    .unwrap_or_else(|e| panic!("{path} is not YAML: {e}\n{text}"));
                if !v.is_null() {
                    out.push(v);
                }
            }
        }
        out
    }

    fn all_of(&self, kind: &str) -> Vec<Value> {
        self.objects()
            .into_iter()
            .filter(|o| o["kind"] == kind)
            .collect()
    }

    fn one<T: DeserializeOwned>(&self, kind: &str) -> T {
        let all = self.all_of(kind);
        assert_eq!(all.len(), 1, "expected one {kind}, found {}", all.len());
        serde_json::from_value(all[0].clone()).unwrap()
    }

    fn notes(&self) -> &str {
        self.manifests
            .iter()
            .find(|(p, _)| p.ends_with("NOTES.txt"))
            .map(|(_, t)| t.as_str())
            .unwrap_or("")
    }
}

use serde::Deserialize;

fn python() -> Option<String> {
    let p = std::env::var("SUBORG_HELM_PYTHON").ok();
    if p.is_none() {
        eprintln!(
            "SUBORG_HELM_PYTHON is not set: the chart is not rendered here (.ci/run sets it)"
        );
    }
    p
}

/// Lints and renders the chart with `tests/chart/<values>`.
fn helm(python: &str, values: &str) -> Result<Rendered, String> {
    let out = Command::new(python)
        .args(["tests/chart/helm.py", &format!("tests/chart/{values}")])
        .output()
        .expect("the Python named by SUBORG_HELM_PYTHON runs");
    assert!(
        out.status.success(),
        "helm.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("helm.py prints JSON");
    if let Some(e) = v.get("error") {
        return Err(e.as_str().unwrap_or_default().to_owned());
    }
    Ok(Rendered {
        lint: v["lint"].clone(),
        manifests: serde_json::from_value(v["manifests"].clone()).unwrap(),
    })
}

const VALID: [&str; 4] = [
    "values-default.yaml",
    "values-postgres-ha.yaml",
    "values-everything.yaml",
    "values-ephemeral.yaml",
];

/// The first path at which `a` and `b` differ.
fn difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x.keys().chain(y.keys()).find_map(|k| {
            difference(
                x.get(k).unwrap_or(&Value::Null),
                y.get(k).unwrap_or(&Value::Null),
                &format!("{path}.{k}"),
            )
        }),
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| difference(p, q, &format!("{path}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("{path}: rendered {a}, schema keeps {b}")),
    }
}

fn conforms<T: DeserializeOwned + Serialize>(object: &Value) -> Result<(), String> {
    let typed: T = serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).unwrap();
    match difference(object, &back, "") {
        None => Ok(()),
        Some(d) => Err(d),
    }
}

#[test]
fn the_chart_lints_clean_with_every_values_file() {
    let Some(py) = python() else { return };
    for values in VALID {
        let r = helm(&py, values).unwrap_or_else(|e| panic!("{values}: {e}"));
        assert_eq!(
            r.lint["errors"],
            serde_json::json!([]),
            "{values}: {}",
            r.lint
        );
        let serious: Vec<&Value> = r.lint["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["severity"].as_i64().unwrap_or(0) >= 2)
            .collect();
        assert!(serious.is_empty(), "{values}: {serious:?}");
    }
}

#[test]
fn every_rendered_object_matches_its_kubernetes_schema() {
    let Some(py) = python() else { return };
    for values in VALID {
        let r = helm(&py, values).unwrap();
        let objects = r.objects();
        assert!(
            objects.len() >= 7,
            "{values}: only {} objects",
            objects.len()
        );
        for o in &objects {
            let kind = o["kind"].as_str().unwrap_or_default();
            let result = match kind {
                "Deployment" => conforms::<Deployment>(o),
                "ServiceAccount" => conforms::<ServiceAccount>(o),
                "Service" => conforms::<Service>(o),
                "PersistentVolumeClaim" => conforms::<PersistentVolumeClaim>(o),
                "ClusterRole" => conforms::<ClusterRole>(o),
                "ClusterRoleBinding" => conforms::<ClusterRoleBinding>(o),
                "Role" => conforms::<Role>(o),
                "RoleBinding" => conforms::<RoleBinding>(o),
                "PodDisruptionBudget" => conforms::<PodDisruptionBudget>(o),
                "NetworkPolicy" => conforms::<NetworkPolicy>(o),
                // The Prometheus Operator's kind has no k8s-openapi type: its fields are checked
                // in `everything_optional_renders_and_fits_together`.
                "ServiceMonitor" => Ok(()),
                other => Err(format!("unexpected kind {other:?}")),
            };
            if let Err(e) = result {
                panic!("{values}: {kind} {}: {e}", o["metadata"]["name"]);
            }
            if kind != "ClusterRole" && kind != "ClusterRoleBinding" {
                assert_eq!(
                    o["metadata"]["namespace"], "suborg-system",
                    "{values}: {kind} is not in the release namespace"
                );
            }
        }
    }
}

#[test]
fn the_default_install_is_locked_down() {
    let Some(py) = python() else { return };
    let r = helm(&py, "values-default.yaml").unwrap();
    let d: Deployment = r.one("Deployment");
    let spec = d.spec.unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.strategy.unwrap().type_.as_deref(), Some("Recreate"));
    let pod = spec.template.spec.unwrap();
    let psc = pod.security_context.unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.run_as_user, Some(65532));
    assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let c = &pod.containers[0];
    let sc = c.security_context.clone().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_owned()]));
    assert_eq!(sc.privileged, None);
    assert_eq!(sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.clone().unwrap().http_get.unwrap().path.unwrap()
    };
    assert_eq!(probe_path(&c.liveness_probe), "/healthz");
    assert_eq!(probe_path(&c.readiness_probe), "/readyz");
    let args = c.args.clone().unwrap();
    assert_eq!(&args[..2], ["run", "--leader-election"]);
    let env: BTreeMap<String, _> = c
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| (e.name.clone(), e))
        .collect();
    assert_eq!(
        env["SUBORG_STORE"].value.as_deref(),
        Some("sqlite:///data/suborg.db")
    );
    assert!(env.contains_key("POD_NAMESPACE") && env.contains_key("POD_NAME"));
    assert!(c.resources.clone().unwrap().limits.is_some());
    // The SQLite file is on a claim that outlives the release.
    let pvc: PersistentVolumeClaim = r.one("PersistentVolumeClaim");
    assert_eq!(
        pvc.metadata.annotations.unwrap()["helm.sh/resource-policy"],
        "keep"
    );
    let volumes = pod.volumes.unwrap();
    let data = volumes.iter().find(|v| v.name == "data").unwrap();
    assert_eq!(
        data.persistent_volume_claim.as_ref().unwrap().claim_name,
        pvc.metadata.name.unwrap()
    );
    for absent in ["PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor"] {
        assert!(r.all_of(absent).is_empty(), "{absent} rendered by default");
    }
    assert!(
        r.notes().contains("kubectl get suborg-all -A"),
        "{}",
        r.notes()
    );
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let s = |v: &[&str]| Some(v.iter().map(|x| x.to_string()).collect::<Vec<_>>());
    PolicyRule {
        api_groups: s(groups),
        resources: s(resources),
        verbs: verbs.iter().map(|x| x.to_string()).collect(),
        ..Default::default()
    }
}

#[test]
fn rbac_grants_exactly_what_the_controller_uses() {
    let Some(py) = python() else { return };
    let r = helm(&py, "values-default.yaml").unwrap();
    let cr: ClusterRole = r.one("ClusterRole");
    let kinds = [
        "organizations",
        "suborganizations",
        "orgmemberships",
        "groups",
        "machineidentities",
        "appconnections",
        "relays",
        "gateways",
        "projects",
        "projectmemberships",
    ];
    let sub = |s: &str| kinds.map(|k| format!("{k}/{s}"));
    let status = sub("status");
    let finalizers = sub("finalizers");
    fn as_refs(v: &[String; 10]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    // Every kind the controller serves, and no other.
    let served: Vec<String> = suborg::api::crds()
        .into_iter()
        .map(|c| c.spec.names.plural)
        .collect();
    assert_eq!(served, kinds);
    assert_eq!(
        cr.rules.unwrap(),
        vec![
            rule(&["suborg.io"], &kinds, &["get", "list", "watch", "patch"]),
            rule(&["suborg.io"], &as_refs(&status), &["get", "patch"]),
            rule(&["suborg.io"], &as_refs(&finalizers), &["update"]),
            rule(&[""], &["namespaces"], &["get", "list", "watch"]),
            rule(&["events.k8s.io"], &["events"], &["create", "patch"]),
        ]
    );
    let role: Role = r.one("Role");
    assert_eq!(role.metadata.namespace.as_deref(), Some("suborg-system"));
    assert_eq!(
        role.rules.unwrap(),
        vec![rule(
            &["coordination.k8s.io"],
            &["leases"],
            &["get", "create", "patch"]
        )]
    );
    let sa: ServiceAccount = r.one("ServiceAccount");
    for binding in r
        .all_of("ClusterRoleBinding")
        .into_iter()
        .chain(r.all_of("RoleBinding"))
    {
        let subject = &binding["subjects"][0];
        assert_eq!(subject["name"], sa.metadata.name.clone().unwrap());
        assert_eq!(subject["namespace"], "suborg-system");
    }
    // The template text says why each rule is there.
    let text = &r.manifests["suborg/templates/clusterrole.yaml"];
    assert_eq!(text.matches("  - apiGroups").count(), 5);
    assert!(
        text.lines()
            .filter(|l| l.trim_start().starts_with('#'))
            .count()
            >= 5
    );
}

#[test]
fn postgres_with_three_replicas_takes_the_dsn_from_a_secret() {
    let Some(py) = python() else { return };
    let r = helm(&py, "values-postgres-ha.yaml").unwrap();
    let d: Deployment = r.one("Deployment");
    let spec = d.spec.unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(
        spec.strategy.unwrap().type_.as_deref(),
        Some("RollingUpdate")
    );
    let c = &spec.template.spec.as_ref().unwrap().containers[0];
    let env = c.env.clone().unwrap();
    let from_secret = |name: &str| {
        let e = env.iter().find(|e| e.name == name).unwrap();
        assert!(e.value.is_none(), "{name} is a plain value");
        let s = e.value_from.clone().unwrap().secret_key_ref.unwrap();
        (s.name, s.key)
    };
    assert_eq!(
        from_secret("SUBORG_STORE"),
        ("suborg-store".into(), "dsn".into())
    );
    // The password is a file from the Secret, never a variable.
    assert!(env.iter().all(|e| e.name != "SUBORG_STORE_PASSWORD"));
    let file = env
        .iter()
        .find(|e| e.name == "SUBORG_STORE_PASSWORD_FILE")
        .and_then(|e| e.value.clone())
        .expect("SUBORG_STORE_PASSWORD_FILE");
    let mount = c
        .volume_mounts
        .clone()
        .unwrap()
        .into_iter()
        .find(|m| m.name == "store-password")
        .expect("the password's mount");
    assert_eq!(mount.read_only, Some(true));
    assert_eq!(file, format!("{}/store-password", mount.mount_path));
    let pod = spec.template.spec.clone().unwrap();
    let secret = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "store-password")
        .and_then(|v| v.secret)
        .expect("a Secret volume");
    assert_eq!(secret.secret_name.as_deref(), Some("suborg-store"));
    let items = secret.items.unwrap();
    assert_eq!(
        (items[0].key.as_str(), items[0].path.as_str()),
        ("password", "store-password")
    );
    assert_eq!(secret.default_mode, Some(0o440));
    assert!(!r.manifests.values().any(|t| t.contains("postgres://")));
    let pdb: PodDisruptionBudget = r.one("PodDisruptionBudget");
    assert_eq!(
        pdb.spec.unwrap().min_available,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    assert!(r.all_of("PersistentVolumeClaim").is_empty());
    let volumes = spec.template.spec.unwrap().volumes.unwrap();
    assert!(volumes.iter().all(|v| v.name != "data"));
}

#[test]
fn everything_optional_renders_and_fits_together() {
    let Some(py) = python() else { return };
    let r = helm(&py, "values-everything.yaml").unwrap();
    let d: Deployment = r.one("Deployment");
    let pod = d.spec.unwrap().template;
    let spec = pod.spec.unwrap();
    let c = &spec.containers[0];
    assert_eq!(c.image.as_deref(), Some("registry.example/suborg:1.2.3"));
    assert_eq!(
        spec.image_pull_secrets.unwrap()[0].name,
        "registry-credentials"
    );
    assert_eq!(spec.node_selector.unwrap()["kubernetes.io/os"], "linux");
    assert_eq!(
        spec.tolerations.unwrap()[0].key.as_deref(),
        Some("dedicated")
    );
    assert!(spec.affinity.unwrap().node_affinity.is_some());
    assert_eq!(
        spec.priority_class_name.as_deref(),
        Some("system-cluster-critical")
    );
    assert_eq!(pod.metadata.unwrap().labels.unwrap()["team"], "platform");
    let args = c.args.clone().unwrap();
    for a in [
        "--selector=team=platform",
        "--adopt",
        "--resync=10m",
        "--log-format=text",
        "--lease-name=custom",
        "--metrics-addr=0.0.0.0:9090",
    ] {
        assert!(args.contains(&a.to_owned()), "{a} missing from {args:?}");
    }
    assert_eq!(c.ports.clone().unwrap()[0].container_port, 9090);
    let svc: Service = r.one("Service");
    let port = &svc.spec.unwrap().ports.unwrap()[0];
    assert_eq!(port.port, 9090);
    let pvc: PersistentVolumeClaim = r.one("PersistentVolumeClaim");
    let pvc_spec = pvc.spec.unwrap();
    assert_eq!(pvc_spec.storage_class_name.as_deref(), Some("fast"));
    let np: NetworkPolicy = r.one("NetworkPolicy");
    let np_spec = np.spec.unwrap();
    let ingress = np_spec.ingress.unwrap();
    assert_eq!(ingress.len(), 1, "only the metrics port is open");
    assert_eq!(
        ingress[0].ports.as_ref().unwrap()[0].port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(9090))
    );
    let sm = &r.all_of("ServiceMonitor")[0];
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        sm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"],
        "suborg"
    );
}

#[test]
fn an_ephemeral_store_warns_that_data_is_lost() {
    let Some(py) = python() else { return };
    let r = helm(&py, "values-ephemeral.yaml").unwrap();
    assert!(r.notes().contains("LOST"), "{}", r.notes());
    assert!(r.all_of("PersistentVolumeClaim").is_empty());
    let d: Deployment = r.one("Deployment");
    let volumes = d.spec.unwrap().template.spec.unwrap().volumes.unwrap();
    let data = volumes.iter().find(|v| v.name == "data").unwrap();
    assert!(data.empty_dir.is_some());
}

#[test]
fn values_that_cannot_work_are_refused_with_a_clear_message() {
    let Some(py) = python() else { return };
    for (values, needle) in [
        (
            "values-sqlite-replicas.yaml",
            "more than one replica needs store.type=postgres",
        ),
        (
            "values-postgres-no-secret.yaml",
            "store.postgres.existingSecret",
        ),
        ("values-typo.yaml", "replicas"),
        ("values-wrong-type.yaml", "/store/type"),
        (
            "values-pod-labels-selector.yaml",
            "podLabels sets app.kubernetes.io/name, which the chart's selector uses",
        ),
        ("values-pdb-bad.yaml", "/podDisruptionBudget/minAvailable"),
        ("values-log-level-bad.yaml", "/controller/logLevel"),
        ("values-resync-too-short.yaml", "/controller/resync"),
    ] {
        match helm(&py, values) {
            Ok(_) => panic!("{values} was accepted"),
            Err(e) => assert!(
                e.contains(needle),
                "{values}: {e:?} does not mention {needle:?}"
            ),
        }
    }
}

#[test]
fn the_schema_check_catches_misplaced_and_mistyped_fields() {
    let good = serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "m"},
        "spec": {"ports": [{"name": "metrics", "port": 8080, "targetPort": "metrics"}]}
    });
    assert_eq!(conforms::<Service>(&good), Ok(()));
    let mut misplaced = good.clone();
    misplaced["spec"]["port"] = serde_json::json!(8080);
    let e = conforms::<Service>(&misplaced).unwrap_err();
    assert!(e.contains(".spec.port"), "{e}");
    let mut mistyped = good.clone();
    mistyped["spec"]["ports"][0]["port"] = serde_json::json!("eighty");
    assert!(conforms::<Service>(&mistyped).is_err());
}
