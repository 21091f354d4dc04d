//! `examples/acme` validates clean; every set in `examples/invalid/` is rejected for its own rule.

use std::path::{Path, PathBuf};

use suborg::domain::Reason::{self, *};
use suborg::manifest::{Loader, Report};

fn check(path: &Path) -> Report {
    let mut loader = Loader::new("default");
    suborg::cli::files::load(&[path.to_owned()], 8 << 20, &mut loader);
    loader.finish(k8s_openapi::jiff::Timestamp::now()).0
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

#[test]
fn the_acme_tree_is_valid() {
    let r = check(&examples().join("acme"));
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
    assert_eq!(r.files, 8);
    assert_eq!(
        r.objects, 34,
        "1 root, 3 sub-organizations, 13 memberships, 3 groups, 1 machine identity, 1 relay, 1 gateway, 2 app connections, 2 projects, 7 project memberships"
    );
    assert_eq!(
        r.ignored, 2,
        "the team lead's Role and RoleBinding are not ours to check"
    );
}

/// Each case: the reason its one error must have, the field, and words of the message.
const CASES: &[(&str, Reason, &str, &str)] = &[
    (
        "admin-not-in-root",
        AdminNotInRoot,
        "spec.admins[0]",
        "is not a member of root Organization \"acme\"",
    ),
    (
        "display-name-padded",
        SchemaViolation,
        "spec.displayName",
        "\" Research\" is not a display name",
    ),
    (
        "duplicate-admin",
        DuplicateAdmin,
        "spec.admins[1]",
        "compared case-insensitively",
    ),
    (
        "duplicate-membership",
        DuplicateMembership,
        "spec.subject",
        "already has a membership in Organization \"acme\"",
    ),
    (
        "duplicate-object",
        DuplicateObject,
        "metadata.name",
        "declared twice",
    ),
    (
        "duplicate-role",
        SchemaViolation,
        "spec.roles[1]",
        "duplicate entry with role=\"member\"",
    ),
    (
        "email-domain-not-allowed",
        EmailDomainNotAllowed,
        "spec.subject.email",
        "allowedEmailDomains",
    ),
    (
        "group-at-root",
        SubjectOwnedByTarget,
        "spec.organizationRef",
        "belong to the organization that created them",
    ),
    (
        "invalid-display-name",
        SchemaViolation,
        "spec.displayName",
        "is not a display name",
    ),
    (
        "invalid-email",
        SchemaViolation,
        "spec.subject.email",
        "is not an email address",
    ),
    (
        "invalid-role",
        SchemaViolation,
        "spec.roles[0].role",
        "is not a slug",
    ),
    (
        "invalid-slug",
        SchemaViolation,
        "spec.slug",
        "is not a slug",
    ),
    (
        "long-display-name",
        SchemaViolation,
        "spec.displayName",
        "at most 64 characters",
    ),
    (
        "malformed-yaml",
        InvalidYaml,
        "",
        "is not valid YAML at line",
    ),
    (
        "missing-name",
        MissingTypeMeta,
        "metadata.name",
        "is required",
    ),
    (
        "namespace-not-allowed",
        NamespaceNotAllowed,
        "metadata.namespace",
        "may not hold memberships of Organization \"acme\"",
    ),
    (
        "nesting-parent-kind",
        NestingViolation,
        "spec.organizationRef.kind",
        "one level of nesting",
    ),
    (
        "nesting-parent-name",
        NestingViolation,
        "spec.organizationRef.name",
        "which is a SubOrganization: sub-organizations cannot have children",
    ),
    (
        "no-access-combined",
        ConflictingRoles,
        "spec.roles",
        "no-access cannot be combined",
    ),
    (
        "no-access-for-an-admin",
        ConflictingRoles,
        "spec.roles",
        "is named in spec.admins of SubOrganization \"engineering\"",
    ),
    ("no-roles", SchemaViolation, "spec.roles", "at least 1 item"),
    (
        "oidc-secret-in-spec",
        UnknownField,
        "spec.authentication.sso.oidc.clientSecret",
        "unknown field (known fields here: clientId, clientSecretRef, issuerUrl)",
    ),
    (
        "parent-not-found",
        ParentNotFound,
        "spec.organizationRef.name",
        "\"globex\", which does not exist",
    ),
    (
        "root-slug-conflict",
        SlugConflict,
        "spec.slug",
        "root organization slugs must be unique",
    ),
    (
        "scim-without-token",
        InvalidAuthentication,
        "spec.authentication.scim",
        "tokenSecretRef",
    ),
    (
        "selector-bad-label-key",
        InvalidSelector,
        "spec.memberNamespaces.selector.matchExpressions[0].key",
        "must be a label key",
    ),
    (
        "selector-bad-operator",
        SchemaViolation,
        "spec.memberNamespaces.selector.matchExpressions[0].operator",
        "\"Equals\" is not one of \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\"",
    ),
    (
        "selector-in-without-values",
        InvalidSelector,
        "spec.memberNamespaces.selector.matchExpressions[0]",
        "operators In and NotIn need at least one value",
    ),
    (
        "selector-with-from-all",
        InvalidSelector,
        "spec.memberNamespaces.selector",
        "only used with from: Selector",
    ),
    (
        "slug-conflict",
        SlugConflict,
        "spec.slug",
        "unique among the children of a root",
    ),
    (
        "slug-from-invalid-name",
        InvalidSlug,
        "metadata.name",
        "set spec.slug",
    ),
    (
        "sso-oidc-and-saml",
        InvalidAuthentication,
        "spec.authentication.sso",
        "exactly one of oidc or saml",
    ),
    (
        "subject-not-in-root",
        SubjectNotInRoot,
        "spec.subject.email",
        "must join it before SubOrganization \"engineering\"",
    ),
    (
        "suborganization-name-taken",
        NameConflict,
        "metadata.name",
        "SubOrganization \"globex\" has the name of Organization \"globex\"",
    ),
    (
        "suborg-authentication",
        AuthenticationNotAllowed,
        "spec.authentication",
        "root organization only",
    ),
    (
        "suborg-without-admins",
        SchemaViolation,
        "spec.admins",
        "at least 1 item",
    ),
    (
        "target-not-found",
        TargetNotFound,
        "spec.organizationRef.name",
        "Organization \"globex\" does not exist",
    ),
    (
        "target-wrong-kind",
        TargetNotFound,
        "spec.organizationRef.name",
        "set spec.organizationRef.kind: SubOrganization",
    ),
    (
        "temporary-bad-duration",
        SchemaViolation,
        "spec.roles[0].temporary.duration",
        "is not a duration such as 90m",
    ),
    (
        "temporary-duration-in-microseconds",
        SchemaViolation,
        "spec.roles[0].temporary.duration",
        "is not a duration such as 90m",
    ),
    (
        "temporary-time-in-lower-case",
        SchemaViolation,
        "spec.roles[0].temporary.end",
        "'T' and 'Z' in upper case",
    ),
    (
        "temporary-end-and-duration",
        InvalidTemporaryAccess,
        "spec.roles[0].temporary",
        "exactly one of end or duration",
    ),
    (
        "temporary-end-before-start",
        InvalidTemporaryAccess,
        "spec.roles[0].temporary",
        "end must be after temporary.start",
    ),
    (
        "undeclared-identity-in-suborg",
        SubjectNotFound,
        "spec.subject.name",
        "MachineIdentity \"team-eng/ci-pipeline\" does not exist",
    ),
    ("unknown-field", UnknownField, "spec.owner", "unknown field"),
    (
        "unknown-kind",
        UnknownKind,
        "kind",
        "suborg.io has no kind \"Team\"",
    ),
    (
        "user-without-email",
        InvalidSubject,
        "spec.subject",
        "a subject of kind User is named by email",
    ),
    (
        "user-with-namespace",
        InvalidSubject,
        "spec.subject",
        "a subject of kind User is named by email",
    ),
    (
        "wrong-api-version",
        UnsupportedApiVersion,
        "apiVersion",
        "use suborg.io/v1alpha1",
    ),
    (
        "wrong-type",
        SchemaViolation,
        "spec.displayName",
        "must be a string, not a list",
    ),
    (
        "group-from-a-sibling",
        SubjectNotVisible,
        "spec.subject",
        "is not one SubOrganization \"engineering\" can use",
    ),
    (
        "group-added-to-its-own-suborg",
        SubjectOwnedByTarget,
        "spec.subject",
        "already belongs to SubOrganization \"engineering\"",
    ),
    (
        "role-read-as-a-boolean",
        SchemaViolation,
        "spec.roles[0].role",
        "must be a string, not the boolean false (a plain yes, no",
    ),
    (
        "root-group-nests-a-group",
        NestedGroupNotAllowed,
        "spec.members[0]",
        "root groups list users only",
    ),
    (
        "nested-group-from-another-suborg",
        NestedGroupOutsideOrganization,
        "spec.members[0]",
        "may nest only its own groups",
    ),
    (
        "group-lists-itself",
        GroupCycle,
        "spec.members[0]",
        "lists itself",
    ),
    (
        "duplicate-group-member",
        DuplicateGroupMember,
        "spec.members[1]",
        "listed twice",
    ),
    (
        "unknown-group-in-suborg",
        SubjectNotVisible,
        "spec.subject",
        "Group \"platform/nobody\" is not one SubOrganization \"engineering\" can use: there is no such Group",
    ),
    (
        "group-member-without-email",
        InvalidSubject,
        "spec.members[0]",
        "a member of kind User is named by email",
    ),
    (
        "identity-in-foreign-namespace",
        NamespaceNotAllowed,
        "metadata.namespace",
        "may not hold machine identities",
    ),
    (
        "project-uses-sibling-connection",
        ResourceNotInOrganization,
        "spec.appConnections[0]",
        "AppConnection \"team-sales/sales-aws\" is not one Project \"api\" of SubOrganization \"engineering\" can use",
    ),
    (
        "project-uses-root-connection",
        ResourceNotInOrganization,
        "spec.appConnections[0]",
        "is not one Project \"api\" of SubOrganization \"engineering\" can use",
    ),
    (
        "gateway-with-foreign-relay",
        ResourceNotInOrganization,
        "spec.relayRef",
        "Relay \"platform/root-relay\" is not one Gateway",
    ),
    (
        "suborg-project-user-not-added",
        SubjectNotInOrganization,
        "spec.subject.email",
        "has not been added to SubOrganization \"engineering\"",
    ),
    (
        "root-project-user-not-member",
        SubjectNotInOrganization,
        "spec.subject.email",
        "or set spec.invite to provision them",
    ),
    (
        "invite-in-suborg-project",
        InviteOutsideRoot,
        "spec.invite",
        "users are provisioned at the root",
    ),
    (
        "invite-a-group",
        InvalidInvite,
        "spec.invite",
        "only users are invited",
    ),
    (
        "root-group-not-added-to-suborg",
        SubjectNotInOrganization,
        "spec.subject",
        "has not been added to SubOrganization \"engineering\"",
    ),
    (
        "secret-in-another-namespace",
        SecretOutsideNamespace,
        "spec.credentialsRef.namespace",
        "references Secret platform/platform-admin-token",
    ),
    (
        "credential-in-config",
        CredentialInConfig,
        "spec.config",
        "belongs in the Secret named by credentialsRef",
    ),
    (
        "project-slug-conflict",
        SlugConflict,
        "spec.slug",
        "project slugs are unique within an organization",
    ),
];

#[test]
fn every_invalid_set_is_rejected_for_its_own_rule() {
    let dir = examples().join("invalid");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = CASES.iter().map(|c| c.0.to_string()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "every directory of examples/invalid needs an expectation here"
    );

    let mut failures = Vec::new();
    for (case, reason, field, needle) in CASES {
        let r = check(&dir.join(case));
        let errors: Vec<_> = r.problems.iter().filter(|f| f.problem.is_error()).collect();
        let ok = errors.len() == 1
            && errors[0].problem.reason == *reason
            && errors[0].problem.field == *field
            && errors[0].problem.message.contains(needle);
        if !ok {
            failures.push(format!(
                "{case}: expected one {reason} on {field:?} containing {needle:?}, got {:#?}",
                r.problems
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Each set without its one broken object is valid, so the case tests that rule and no other.
#[test]
fn the_cases_share_a_valid_base() {
    let base =
        std::fs::read_to_string(examples().join("invalid/subject-not-in-root/manifests.yaml"))
            .unwrap();
    // Drop the last document, the offending membership.
    let valid: Vec<&str> = base.split("\n---\n").collect();
    let valid = valid[..valid.len() - 1].join("\n---\n");
    let r = suborg::manifest::check_sources(
        [("base.yaml", valid.as_bytes())],
        "default",
        k8s_openapi::jiff::Timestamp::now(),
    );
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
    assert_eq!(r.objects, 3);
}

/// Argo CD applies the example tree in waves, and waits for each to be healthy: namespaces,
/// then roots, then sub-organizations with the root members they name as admins, then the
/// memberships in sub-organizations. `kubectl apply -f` takes the files in the same order.
#[test]
fn the_example_tree_carries_sync_waves_in_dependency_order() {
    let mut seen = 0;
    for entry in std::fs::read_dir("examples/acme").unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(doc).unwrap();
            let kind = v["kind"].as_str().unwrap_or_default();
            // Root groups and identities come with the sub-organizations (before the
            // memberships that add them); sub-organization groups after the memberships of the
            // users they list.
            let in_sub = v["spec"]["organizationRef"]["kind"].as_str() == Some("SubOrganization");
            let sub_group = kind == "Group" && in_sub;
            let expected = match kind {
                "Organization" => "0",
                "SubOrganization" | "MachineIdentity" => "1",
                "Group" if sub_group => "3",
                "Group" => "1",
                // Root members with the sub-organizations that name them as admins; the
                // memberships in a sub-organization after it.
                "OrgMembership" if in_sub => "2",
                "OrgMembership" => "1",
                // What projects use, the projects, then their members.
                "AppConnection" | "Relay" => "4",
                "Gateway" => "5",
                "Project" => "6",
                "ProjectMembership" => "7",
                _ => "-1",
            };
            let wave = v["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"].as_str();
            assert_eq!(wave, Some(expected), "{kind} {:?}", v["metadata"]["name"]);
            seen += 1;
        }
    }
    assert!(seen >= 34, "{seen}");
}

/// Object names follow Kubernetes (a DNS-1123 subdomain: 253 characters, no limit on one
/// dot-separated part); whether a name can also be the slug is the slug rule's business.
/// (All namespaces are delegated: whether a default selector can name a long name is the
/// delegation rule's.)
#[test]
fn object_names_follow_kubernetes_and_slugs_follow_their_own_rule() {
    let org = |name: &str, slug: Option<&str>| {
        let slug = slug.map(|s| format!("\n  slug: {s}")).unwrap_or_default();
        format!(
            "apiVersion: suborg.io/v1alpha1\nkind: Organization\nmetadata:\n  name: {name}\nspec:\n  displayName: Acme{slug}\n  memberNamespaces:\n    from: All\n"
        )
    };
    let check = |yaml: String| {
        suborg::manifest::check_sources(
            [("names.yaml", yaml.as_bytes())],
            "default",
            k8s_openapi::jiff::Timestamp::now(),
        )
        .problems
    };
    let sixty_four = "a".repeat(64);
    assert_eq!(
        check(org(&sixty_four, None)),
        vec![],
        "a 64-character slug-like name"
    );

    let seventy = "b".repeat(70);
    let problems = check(org(&seventy, None));
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].problem.reason, InvalidSlug);
    assert_eq!(
        check(org(&seventy, Some("acme"))),
        vec![],
        "spec.slug makes it valid"
    );

    let dotted = format!("{}.example.com", "c".repeat(100));
    let problems = check(org(&dotted, None));
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].problem.reason, InvalidSlug);
    assert_eq!(check(org(&dotted, Some("acme"))), vec![]);

    let too_long = "d".repeat(254);
    let problems = check(org(&too_long, Some("acme")));
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].problem.reason, SchemaViolation);
    assert_eq!(problems[0].problem.field, "metadata.name");
}
