//! Namespace delegation (`memberNamespaces`): which namespaces may hold objects that target an
//! organization. Follows the Gateway API's `allowedRoutes.namespaces` and Kubernetes label
//! selector semantics.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::slug::is_dns_label;
use crate::api::{MemberNamespaces, NamespacesFrom};

/// The label a namespace carries to be admitted by an organization that uses the default
/// selector: `suborg.io/organization=<metadata.name of the organization>`.
pub const ORGANIZATION_LABEL: &str = "suborg.io/organization";

/// The label Kubernetes sets on every namespace, holding its name. Offline, it is added to the
/// labels read from Namespace manifests so selectors behave as they do in a cluster.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A selector that cannot be evaluated, with the field that is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorError {
    /// Path below `spec.memberNamespaces.selector`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Whether a namespace with `labels` may hold objects targeting the organization named
/// `org_name` whose delegation is `policy` (`None` means the default).
pub fn admits(
    policy: Option<&MemberNamespaces>,
    org_name: &str,
    labels: &BTreeMap<String, String>,
) -> Result<bool, SelectorError> {
    let from = policy.map(|p| p.from).unwrap_or_default();
    match from {
        NamespacesFrom::All => Ok(true),
        NamespacesFrom::Selector => match policy.and_then(|p| p.selector.as_ref()) {
            Some(selector) => matches(selector, labels),
            None => Ok(labels.get(ORGANIZATION_LABEL).map(String::as_str) == Some(org_name)),
        },
    }
}

/// Describes the policy for messages: which namespaces it admits.
pub fn describe(policy: Option<&MemberNamespaces>, org_name: &str) -> String {
    match (
        policy.map(|p| p.from).unwrap_or_default(),
        policy.and_then(|p| p.selector.as_ref()),
    ) {
        (NamespacesFrom::All, _) => "all namespaces".to_owned(),
        (NamespacesFrom::Selector, None) => {
            format!("namespaces labelled {ORGANIZATION_LABEL}={org_name}")
        }
        (NamespacesFrom::Selector, Some(s)) => {
            let mut parts: Vec<String> = s
                .match_labels
                .iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            for e in s.match_expressions.iter().flatten() {
                let values = e.values.as_deref().unwrap_or_default().join(",");
                parts.push(match e.operator.as_str() {
                    "Exists" => e.key.clone(),
                    "DoesNotExist" => format!("!{}", e.key),
                    op => format!("{} {} ({values})", e.key, op.to_lowercase()),
                });
            }
            if parts.is_empty() {
                "all namespaces (empty selector)".to_owned()
            } else {
                format!("namespaces matching {}", parts.join(", "))
            }
        }
    }
}

/// Checks a selector for errors without evaluating it.
pub fn check_selector(selector: &LabelSelector) -> Result<(), SelectorError> {
    matches(selector, &BTreeMap::new()).map(|_| ())
}

/// The first key or value of `selector` that no label can have: such a selector admits no
/// namespace through that term, which is worth saying rather than leaving quiet.
pub fn unmatchable(selector: &LabelSelector) -> Option<SelectorError> {
    for (k, v) in selector.match_labels.iter().flatten() {
        if let Err(message) = label_key(k).and_then(|()| label_value(v)) {
            return Some(SelectorError {
                field: format!("matchLabels[{k:?}]"),
                message,
            });
        }
    }
    for (i, e) in selector.match_expressions.iter().flatten().enumerate() {
        let bad = label_key(&e.key)
            .and_then(|()| e.values.iter().flatten().try_for_each(|v| label_value(v)));
        if let Err(message) = bad {
            return Some(SelectorError {
                field: format!("matchExpressions[{i}]"),
                message,
            });
        }
    }
    None
}

/// A label name or value: at most 63 characters, alphanumeric at both ends, `-`, `_` and `.`
/// between.
pub(crate) fn label_name(s: &str) -> bool {
    let inner = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars().all(inner)
}

/// Whether `k` is a label key: an optional DNS-subdomain prefix (parts of at most 63
/// characters) and `/`, then a name.
fn label_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let prefix_ok = prefix.is_none_or(|p| p.len() <= 253 && p.split('.').all(is_dns_label));
    if prefix_ok && label_name(name) {
        Ok(())
    } else {
        Err(format!(
            "{k:?} is not a label key: an optional DNS subdomain and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ))
    }
}

/// Whether `v` is a label value: empty, or a name as in [`label_name`].
fn label_value(v: &str) -> Result<(), String> {
    if v.is_empty() || label_name(v) {
        Ok(())
    } else {
        Err(format!(
            "{v:?} is not a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ))
    }
}

/// Kubernetes label selector semantics: every `matchLabels` pair and every expression must hold;
/// an empty selector matches everything.
pub fn matches(
    selector: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> Result<bool, SelectorError> {
    let mut ok = true;
    for (k, v) in selector.match_labels.iter().flatten() {
        ok &= labels.get(k) == Some(v);
    }
    for (i, e) in selector.match_expressions.iter().flatten().enumerate() {
        let values = e.values.as_deref().unwrap_or_default();
        let field = format!("matchExpressions[{i}]");
        let err = |message: String| SelectorError {
            field: field.clone(),
            message,
        };
        let value = labels.get(&e.key);
        let holds = match e.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(err(format!(
                    "operator {} needs at least one value",
                    e.operator
                )));
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(err(format!("operator {} takes no values", e.operator)));
            }
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => !value.is_some_and(|v| values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => {
                return Err(err(format!(
                    "unknown operator {other:?}: use In, NotIn, Exists or DoesNotExist"
                )));
            }
        };
        ok &= holds;
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    #[test]
    fn a_selector_names_only_keys_and_values_a_label_can_have() {
        let by = |k: &str, v: &str| LabelSelector {
            match_labels: Some(labels(&[(k, v)])),
            ..Default::default()
        };
        for (k, v) in [
            ("team", "platform"),
            ("suborg.io/organization", "acme"),
            ("kubernetes.io/metadata.name", "team-a"),
            ("a_b.c-d", ""),
        ] {
            assert_eq!(unmatchable(&by(k, v)), None, "{k}={v}");
        }
        for (k, v) in [
            ("bad key!", "v"),
            ("", "v"),
            ("-team", "v"),
            ("Upper.Case/team", "v"),
            ("/team", "v"),
            ("team", "not ok"),
            ("team", &"x".repeat(64)),
        ] {
            let e = unmatchable(&by(k, v)).unwrap_or_else(|| panic!("{k}={v}"));
            assert!(e.field.starts_with("matchLabels["), "{e:?}");
        }
        let e = unmatchable(&LabelSelector {
            match_expressions: Some(vec![expr("bad key!", "Exists", &[])]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(e.field, "matchExpressions[0]");
        assert!(e.message.contains("not a label key"), "{e:?}");
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn default_policy_uses_the_organization_label() {
        let ns = labels(&[(ORGANIZATION_LABEL, "eng")]);
        assert_eq!(admits(None, "eng", &ns), Ok(true));
        assert_eq!(admits(None, "sales", &ns), Ok(false));
        assert_eq!(admits(None, "eng", &labels(&[])), Ok(false));
        let explicit_default = MemberNamespaces::default();
        assert_eq!(admits(Some(&explicit_default), "eng", &ns), Ok(true));
    }

    #[test]
    fn from_all_admits_everything() {
        let p = MemberNamespaces {
            from: NamespacesFrom::All,
            selector: None,
        };
        assert_eq!(admits(Some(&p), "eng", &labels(&[])), Ok(true));
        assert_eq!(describe(Some(&p), "eng"), "all namespaces");
    }

    #[test]
    fn selector_semantics() {
        let sel = LabelSelector {
            match_labels: Some([("team".to_string(), "eng".to_string())].into()),
            match_expressions: Some(vec![
                expr("env", "In", &["prod", "staging"]),
                expr("frozen", "DoesNotExist", &[]),
                expr("tier", "NotIn", &["legacy"]),
                expr("owner", "Exists", &[]),
            ]),
        };
        let p = MemberNamespaces {
            from: NamespacesFrom::Selector,
            selector: Some(sel),
        };
        let good = labels(&[("team", "eng"), ("env", "prod"), ("owner", "x")]);
        assert_eq!(admits(Some(&p), "o", &good), Ok(true));
        let mut frozen = good.clone();
        frozen.insert("frozen".into(), "yes".into());
        assert_eq!(admits(Some(&p), "o", &frozen), Ok(false));
        let mut legacy = good.clone();
        legacy.insert("tier".into(), "legacy".into());
        assert_eq!(admits(Some(&p), "o", &legacy), Ok(false));
        let mut dev = good.clone();
        dev.insert("env".into(), "dev".into());
        assert_eq!(admits(Some(&p), "o", &dev), Ok(false));
        let mut no_owner = good.clone();
        no_owner.remove("owner");
        assert_eq!(admits(Some(&p), "o", &no_owner), Ok(false));
        assert!(describe(Some(&p), "o").contains("team=eng"));
    }

    #[test]
    fn empty_selector_matches_everything() {
        let p = MemberNamespaces {
            from: NamespacesFrom::Selector,
            selector: Some(LabelSelector::default()),
        };
        assert_eq!(admits(Some(&p), "o", &labels(&[])), Ok(true));
    }

    #[test]
    fn malformed_selectors_are_errors() {
        for (e, needle) in [
            (expr("a", "Equals", &["x"]), "unknown operator"),
            (expr("a", "In", &[]), "at least one value"),
            (expr("a", "Exists", &["x"]), "takes no values"),
        ] {
            let sel = LabelSelector {
                match_expressions: Some(vec![e]),
                match_labels: None,
            };
            let err = check_selector(&sel).unwrap_err();
            assert_eq!(err.field, "matchExpressions[0]");
            assert!(err.message.contains(needle), "{}", err.message);
        }
    }
}
