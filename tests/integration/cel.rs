//! The CEL rules of the CRDs, evaluated without a cluster (kube's `cel` feature).

use serde_json::json;
use suborg::api::*;

use crate::fixtures::*;

/// What `c`'s rules say with `config` holding `key: value` alone.
fn config_messages(c: &mut AppConnection, key: &str, value: &str) -> Vec<String> {
    c.spec.config = [(key.to_string(), value.to_string())].into();
    messages(c.validate_cel())
}

fn messages(r: Result<(), kube::core::cel::ValidationErrors>) -> Vec<String> {
    match r {
        Ok(()) => vec![],
        Err(e) => e
            .iter()
            .map(|e| format!("{}: {}", e.field_path, e.message))
            .collect(),
    }
}

#[test]
fn a_valid_tree_passes() {
    assert_eq!(messages(org("acme").validate_cel()), Vec::<String>::new());
    assert_eq!(
        messages(suborg("eng", "acme", &["a@x.io"]).validate_cel()),
        Vec::<String>::new()
    );
    let m = root_member("platform", "acme", "a@x.io");
    assert_eq!(messages(m.validate_cel()), Vec::<String>::new());
}

#[test]
fn sub_organization_parent_must_be_a_root() {
    let mut s = suborg("platform-team", "eng", &["a@x.io"]);
    s.spec.organization_ref.kind = OrganizationKind::SubOrganization;
    let m = messages(s.validate_cel());
    assert_eq!(
        m,
        vec![format!("spec.organizationRef.kind: {NESTING_MESSAGE}")]
    );
    assert!(m[0].contains("sub-organizations cannot have children (one level of nesting)"));
}

#[test]
fn organization_ref_is_immutable() {
    let old = suborg("eng", "acme", &["a@x.io"]);
    let mut new = old.clone();
    assert!(
        new.validate_cel_update(&old).is_ok(),
        "an unchanged parent is fine"
    );
    new.spec.organization_ref.name = "globex".into();
    let m = messages(new.validate_cel_update(&old));
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(
        m[0].starts_with("spec.organizationRef: is immutable"),
        "{m:?}"
    );

    let old = root_member("platform", "acme", "a@x.io");
    let mut new = old.clone();
    new.spec.organization_ref.name = "globex".into();
    assert!(messages(new.validate_cel_update(&old))[0].contains("is immutable"));
    let mut new = old.clone();
    new.spec.subject.email = Some("b@x.io".into());
    assert!(messages(new.validate_cel_update(&old))[0].starts_with("spec.subject: is immutable"));
    // Roles may change.
    let mut new = old.clone();
    new.spec.roles = vec![role("admin")];
    assert!(new.validate_cel_update(&old).is_ok());
}

#[test]
fn slug_is_immutable_once_set() {
    let mut old = suborg("eng", "acme", &["a@x.io"]);
    old.spec.slug = Some("eng".into());
    let mut new = old.clone();
    new.spec.slug = Some("engineering".into());
    assert!(
        messages(new.validate_cel_update(&old))
            .iter()
            .any(|m| m.starts_with("spec.slug: is immutable"))
    );
    let mut old = org("acme");
    old.spec.slug = Some("acme".into());
    let mut new = old.clone();
    new.spec.slug = Some("acme-corp".into());
    assert!(
        messages(new.validate_cel_update(&old))
            .iter()
            .any(|m| m.starts_with("spec.slug: is immutable"))
    );
}

#[test]
fn the_slug_cannot_be_changed_by_adding_or_removing_spec_slug() {
    let kept = |old: Option<&str>, new: Option<&str>| {
        let mut before = suborg("eng", "acme", &["a@x.io"]);
        before.spec.slug = old.map(str::to_owned);
        let mut after = before.clone();
        after.spec.slug = new.map(str::to_owned);
        messages(after.validate_cel_update(&before))
    };
    // Added, or removed, changing the slug: refused, on spec.slug.
    for (old, new) in [(None, Some("other")), (Some("other"), None)] {
        let m = kept(old, new);
        assert_eq!(m.len(), 1, "{old:?} -> {new:?}: {m:?}");
        let field = m[0].trim_start_matches('.');
        assert!(
            field.starts_with(&format!("spec.slug: {SLUG_KEPT_MESSAGE}")),
            "{m:?}"
        );
    }
    // The slug it already has, spelled out or left to the name: allowed.
    assert_eq!(kept(None, Some("eng")), Vec::<String>::new());
    assert_eq!(kept(Some("eng"), None), Vec::<String>::new());
    // Roots and projects the same.
    let before = org("acme");
    let mut after = before.clone();
    after.spec.slug = Some("acme-corp".into());
    assert_eq!(messages(after.validate_cel_update(&before)).len(), 1);
    let before = project("team-a", "api", OrganizationKind::Organization, "acme");
    let mut after = before.clone();
    after.spec.slug = Some("billing".into());
    assert_eq!(messages(after.validate_cel_update(&before)).len(), 1);
}

#[test]
fn sub_organization_cannot_configure_authentication() {
    let mut s = suborg("eng", "acme", &["a@x.io"]);
    s.spec.authentication = Some(json!({"sso": {"saml": {"metadataUrl": "https://idp/x"}}}));
    let m = messages(s.validate_cel());
    assert_eq!(
        m,
        vec![format!("spec.authentication: {AUTHENTICATION_MESSAGE}")]
    );
    assert!(m[0].contains("root organization only"));
}

#[test]
fn name_must_be_a_slug_unless_slug_is_set() {
    let o = org("acme.corp");
    assert!(messages(o.validate_cel())[0].contains("set spec.slug"));
    let mut o = org("acme.corp");
    o.spec.slug = Some("acme".into());
    assert!(o.validate_cel().is_ok());
    assert!(
        messages(suborg("eng.team", "acme", &["a@x.io"]).validate_cel())[0]
            .contains("set spec.slug")
    );
}

#[test]
fn temporary_roles() {
    let cases = [
        (
            temporary(
                "admin",
                Some("2026-01-02T00:00:00Z"),
                Some("2026-01-01T00:00:00Z"),
                None,
            ),
            Some("temporary.end must be after temporary.start"),
        ),
        (
            temporary(
                "admin",
                Some("2026-01-01T00:00:00Z"),
                Some("2026-01-01T00:00:00Z"),
                None,
            ),
            Some("temporary.end must be after temporary.start"),
        ),
        (
            temporary("admin", None, Some("2026-01-01T00:00:00Z"), Some("1h")),
            Some("exactly one of end or duration"),
        ),
        (
            temporary("admin", None, None, None),
            Some("exactly one of end or duration"),
        ),
        (
            temporary("admin", None, None, Some("0s")),
            Some("greater than zero"),
        ),
        (
            temporary(
                "admin",
                Some("2026-01-01T00:00:00Z"),
                Some("2026-01-01T00:00:01Z"),
                None,
            ),
            None,
        ),
        (temporary("admin", None, None, Some("8h")), None),
        (
            temporary(
                "admin",
                Some("2026-01-01T00:00:00+02:00"),
                None,
                Some("90m"),
            ),
            None,
        ),
        // Past the year 9999, from a late start and from an early one with the longest
        // duration; within it, both ways.
        (
            temporary(
                "admin",
                Some("9999-12-31T23:00:00Z"),
                None,
                Some("2562047h"),
            ),
            Some("past the year 9999"),
        ),
        (
            temporary("admin", Some("9999-12-31T23:00:00Z"), None, Some("61m")),
            Some("past the year 9999"),
        ),
        (
            temporary(
                "admin",
                Some("9800-01-01T00:00:00Z"),
                None,
                Some("2562047h"),
            ),
            Some("past the year 9999"),
        ),
        (
            temporary("admin", Some("9999-12-31T23:00:00Z"), None, Some("59m")),
            None,
        ),
        (
            temporary(
                "admin",
                Some("9707-01-01T00:00:00Z"),
                None,
                Some("2562047h"),
            ),
            None,
        ),
        // To the last fraction of a second of 9999.
        (
            temporary("admin", Some("9999-12-31T23:59:59.5Z"), None, Some("400ms")),
            None,
        ),
        (
            temporary(
                "admin",
                Some("9999-12-31T23:00:00Z"),
                None,
                Some("59m59.999s"),
            ),
            None,
        ),
        (
            temporary("admin", Some("9999-12-31T23:59:59.5Z"), None, Some("600ms")),
            Some("past the year 9999"),
        ),
    ];
    for (r, expected) in cases {
        let m = user_in(
            "ns",
            "m",
            OrganizationKind::Organization,
            "acme",
            "a@x.io",
            vec![r.clone()],
        );
        let got = messages(m.validate_cel());
        match expected {
            Some(needle) => {
                assert_eq!(got.len(), 1, "{r:?}: {got:?}");
                assert!(
                    got[0].starts_with("spec.roles[0].temporary: ") && got[0].contains(needle),
                    "{r:?}: {got:?}"
                );
            }
            None => assert!(got.is_empty(), "{r:?}: {got:?}"),
        }
    }
}

/// A `duration` counts from the object's creation unless `start` says otherwise, so a role
/// given one later must say when it starts: else it would count from a moment already past.
#[test]
fn a_duration_added_later_needs_a_start() {
    let old = root_member("platform", "acme", "a@x.io");
    let mut new = old.clone();
    new.spec
        .roles
        .push(temporary("auditor", None, None, Some("5m")));
    assert!(
        new.validate_cel().is_ok(),
        "on creation, the duration counts from now"
    );
    let m = messages(new.validate_cel_update(&old));
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(
        m[0].starts_with("spec.roles: temporary.start is needed for a role given a duration"),
        "{m:?}"
    );
    // With a start; or a role that had its duration already, changed; or an end: all fine.
    new.spec.roles[1] = temporary("auditor", Some("2026-12-02T15:00:00Z"), None, Some("5m"));
    assert!(new.validate_cel_update(&old).is_ok());
    let mut old = new.clone();
    old.spec.roles[1] = temporary("auditor", None, None, Some("8h"));
    new.spec.roles[1] = temporary("auditor", None, None, Some("4h"));
    assert!(new.validate_cel_update(&old).is_ok());
    new.spec.roles[0] = temporary("member", None, Some("2027-01-01T00:00:00Z"), None);
    assert!(new.validate_cel_update(&old).is_ok());
    // A permanent role made temporary by duration is given one later too.
    new.spec.roles[0] = temporary("member", None, None, Some("1h"));
    assert_eq!(messages(new.validate_cel_update(&old)).len(), 1);
}

#[test]
fn no_access_stands_alone() {
    let m = user_in(
        "ns",
        "m",
        OrganizationKind::Organization,
        "acme",
        "a@x.io",
        vec![role("no-access"), role("member")],
    );
    assert_eq!(
        messages(m.validate_cel()),
        vec!["spec.roles: no-access cannot be combined with other roles"]
    );
    let m = user_in(
        "ns",
        "m",
        OrganizationKind::Organization,
        "acme",
        "a@x.io",
        vec![role("admin"), role("release-manager")],
    );
    assert!(m.validate_cel().is_ok());
}

#[test]
fn subjects_are_named_by_their_kind() {
    let mut m = root_member("ns", "acme", "a@x.io");
    m.spec.subject.name = Some("alice".into());
    assert!(messages(m.validate_cel())[0].starts_with("spec.subject: a subject of kind User"));
    m.spec.subject.email = None;
    assert!(m.validate_cel().is_err(), "a User needs an email");
    m.spec.subject.kind = SubjectKind::Group;
    assert!(m.validate_cel().is_ok(), "a Group is named by name");
    m.spec.subject.email = Some("a@x.io".into());
    assert!(m.validate_cel().is_err(), "a Group has no email");

    // `namespace` is a CEL reserved word: the rule reads it as `self.__namespace__`, as the
    // API server requires, and the offline engine must see the field under that name too.
    let mut m = root_member("ns", "acme", "a@x.io");
    m.spec.subject.namespace = Some("platform".into());
    let found = messages(m.validate_cel());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("spec.subject: a subject of kind User"));
}

#[test]
fn authentication_settings() {
    let secret = SecretKeyRef {
        name: "s".into(),
        namespace: "platform".into(),
        key: "k".into(),
    };
    let mut o = org("acme");
    o.spec.authentication = Some(Authentication {
        sso: Some(Sso {
            oidc: None,
            saml: None,
            enforced: true,
        }),
        scim: Some(Scim {
            enabled: true,
            token_secret_ref: None,
        }),
        allowed_email_domains: vec![],
    });
    let m = messages(o.validate_cel());
    assert_eq!(m.len(), 2, "{m:?}");
    assert!(m.iter().any(|m| m.contains("exactly one of oidc or saml")));
    assert!(m.iter().any(|m| m.contains("scim.tokenSecretRef")));
    o.spec.authentication = Some(Authentication {
        sso: Some(Sso {
            oidc: Some(Oidc {
                issuer_url: "https://idp".into(),
                client_id: "c".into(),
                client_secret_ref: secret.clone(),
            }),
            saml: None,
            enforced: true,
        }),
        scim: Some(Scim {
            enabled: true,
            token_secret_ref: Some(secret),
        }),
        allowed_email_domains: vec!["x.io".into()],
    });
    assert!(o.validate_cel().is_ok());
    // The store keeps these URLs as written: no credential in them.
    fn sso(o: &mut Organization) -> &mut Sso {
        o.spec
            .authentication
            .as_mut()
            .unwrap()
            .sso
            .as_mut()
            .unwrap()
    }
    let with_issuer =
        |o: &mut Organization, url: &str| sso(o).oidc.as_mut().unwrap().issuer_url = url.into();
    for url in [
        "https://admin:hunter2@login.example/realms/x",
        "https://admin@login.example/realms/x",
    ] {
        with_issuer(&mut o, url);
        let m = messages(o.validate_cel());
        assert_eq!(m.len(), 1, "{url}: {m:?}");
        assert!(m[0].contains("carry no user or password"), "{m:?}");
    }
    with_issuer(&mut o, "https://login.example/realms/x?token=abc");
    assert!(messages(o.validate_cel())[0].contains("no query or fragment"));
    with_issuer(&mut o, "https://login.example/realms/x@y");
    assert!(o.validate_cel().is_ok(), "an @ in the path is not a user");
    let saml = sso(&mut o);
    saml.oidc = None;
    saml.saml = Some(Saml {
        metadata_url: "https://login.example/metadata?appid=1".into(),
        entity_id: None,
    });
    assert!(o.validate_cel().is_ok());
    for url in [
        "https://login.example/metadata?access_token=abc",
        "https://login.example/metadata?appid=1&sig=abc",
        "https://login.example/metadata?appid=1&X-Amz-Signature=abc",
        "https://login.example/metadata#token=abc",
        "https://login.example/metadata?a=1;token=abc",
        "https://login.example/metadata?key=abc",
        "https://login.example/metadata?appid=1&clientsecret=abc",
        "https://u:p@login.example/metadata",
    ] {
        sso(&mut o).saml.as_mut().unwrap().metadata_url = url.into();
        let m = messages(o.validate_cel());
        assert_eq!(m.len(), 1, "{url}: {m:?}");
        assert!(
            m[0].starts_with("spec.authentication.sso.saml.metadataUrl: sso "),
            "{m:?}"
        );
    }
}

#[test]
fn selector_only_with_from_selector() {
    let mut o = org("acme");
    o.spec.member_namespaces = Some(MemberNamespaces {
        from: NamespacesFrom::All,
        selector: Some(Default::default()),
    });
    assert_eq!(
        messages(o.validate_cel()),
        vec!["spec.memberNamespaces.selector: selector is only used with from: Selector"]
    );
    o.spec.member_namespaces = Some(MemberNamespaces {
        from: NamespacesFrom::Selector,
        selector: Some(Default::default()),
    });
    assert!(o.validate_cel().is_ok());
}

#[test]
fn connection_config_holds_no_credentials() {
    let mut c = connection("team-eng", "db", OrganizationKind::SubOrganization, "eng");
    assert_eq!(messages(c.validate_cel()), Vec::<String>::new());
    for key in [
        "password",
        "DB_PASSWORD",
        "apiKey",
        "private_key",
        "clientSecret",
        "client_secret",
        "secret",
        "token",
        "accessToken",
        "GITHUB_TOKEN",
        "pwd",
        "Pass",
        "auth",
        "basicAuth",
        "bearer",
        "connectionString",
        "dsn",
        "secretKey",
        "SECRET_KEY",
        "storageAccountKey",
        "signingKey",
        "sshKey",
        "serviceAccountJson",
        "kubeconfig",
        "authorization",
        "cookie",
        "passcode",
        "jwt",
        // One word, no capital or separator to find the last word by.
        "clientsecret",
        "apikey",
        "APIKEY",
        "secretkey",
        "authtoken",
        "privatekey",
        "dbpassword",
        "SERVICEACCOUNTJSON",
        // Short words, and credential words followed by a number or an encoding.
        "pw",
        "mysql_pw",
        "dbPw",
        "otp",
        "pass_phrase",
        "privkey",
        "priv_key",
        "sessionId",
        "session_id",
        "password1",
        "token2",
        "token_2",
        "pass1",
        "PWD_2",
        "apikey_value",
        "secretData",
        "privateKeyB64",
        "PRIVATE_KEY_PEM",
        "private_key_pem_b64",
        "tls_key_pem",
        "keyPem",
        "TLS_KEY_DER",
        "signingKeyJwk",
        "privateKeyJson",
        "sas",
        "blob_sas",
        "storageSas",
    ] {
        let m = config_messages(&mut c, key, "x");
        assert_eq!(m.len(), 1, "{key}: {m:?}");
        assert!(
            m[0].starts_with("spec.config: holds non-secret settings only"),
            "{m:?}"
        );
    }
    // Keys that name or point at something, with a credential word that is not their last.
    for key in [
        "region",
        "tokenUrl",
        "tokenEndpoint",
        "secretName",
        "authType",
        "compass",
        "bypassProxy",
        "accessKeyId",
        "passwordPolicy",
        "passwordFile",
        "publicKey",
        "partitionKey",
        "publickey",
        "monkey",
        "hotkeys",
        "sasl",
        "saslMechanism",
        "public_key_pem",
        "publicKeyPem",
        "cert_pem",
        "caPem",
        "certificatePem",
        "endpoint",
        "url",
        "sessionTimeout",
        "passwordMinLength",
        "tokenTTL",
        "secretNamespace",
        "compass_raw",
        "bypass2",
        "pinned",
    ] {
        assert_eq!(
            config_messages(&mut c, key, "x"),
            Vec::<String>::new(),
            "{key}"
        );
    }
    // A password inside a URL value; the same URL without it is fine.
    c.spec.config = [(
        "url".to_string(),
        "postgres://app:hunter2@db/app".to_string(),
    )]
    .into();
    let m = messages(c.validate_cel());
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(m[0].contains("a URL with a password"), "{m:?}");
    c.spec.config = [("url".to_string(), "postgres://app@db/app".to_string())].into();
    assert_eq!(messages(c.validate_cel()), Vec::<String>::new());
    // Values that are credentials, whatever their key.
    for value in [
        "-----BEGIN RSA PRIVATE KEY-----\nMIIE",
        "-----BEGIN PRIVATE KEY-----",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
        "Server=db;Password=hunter2",
        "Password=hunter2;Server=db",
        "host=db; pwd = hunter2",
        "https://h.example/x?access_token=abc",
        "https://h.example/x?a=1&sig=abc",
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBF",
        "https://b.s3.example/k?X-Amz-Algorithm=AWS4&X-Amz-Signature=abc",
        "https://b.s3.example/k?X-Amz-Security-Token=abc",
        "https://app.example/cb#access_token=abc&state=1",
        "https://acct.blob.example/c?sv=2022&sas_token=abc",
        "https://maps.example/api/js?key=AIzaSy",
        "https://x.firebase.example/a.json?auth=abcd",
        "https://a.example/x?a=1;token=abc",
        // Joined words, read by the last one as keys are.
        "https://db.example/x?db_password=hunter2",
        "https://db.example/x?dbpassword=hunter2",
        "https://db.example/x?sslpassword=hunter2",
        "https://db.example/x?clientsecret=hunter2",
        "https://db.example/x?a=1&authToken=hunter2",
        "https://db.example/x?basic_auth=hunter2",
        "https://db.example/x?apiKey=hunter2",
        "https://db.example/x?x-api-key=hunter2",
        // With a number or an encoding after the word, and the short words, as keys are read.
        "https://db.example/x?password1=hunter2",
        "https://db.example/x?apikey_value=hunter2",
        "https://db.example/x?token_b64=hunter2",
        "https://db.example/x?pw=hunter2",
        "https://db.example/x?a=1&pass=hunter2",
        "https://db.example/x?otp=123456",
        "https://db.example/x?jwt=eyJ",
        "https://db.example/x?bearer=abc",
        "https://db.example/x?session_id=abc",
        "https://db.example/x?cookie=abc",
        "https://db.example/x?dsn=abc",
        // A libpq connection string: keyword=value pairs apart by spaces.
        "host=db user=app password=hunter2",
    ] {
        let m = config_messages(&mut c, "settings", value);
        assert_eq!(m.len(), 1, "{value}: {m:?}");
        assert!(
            m[0].contains("a private key, or a password or token"),
            "{m:?}"
        );
    }
    for value in [
        "-----BEGIN CERTIFICATE-----",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----",
        "https://h.example/x?region=eu&tokenUrl=y",
        "https://h.example/x?sort_key=name&partitionKey=p&monkey=1",
        "https://h.example/x?oauth=v2&response_type=token&grant_type=password",
        "https://h.example/x?bypass=1&passive=true&keyboard=us&id=7&tokenUrl=y",
        "host=db user=app dbname=app sslmode=require",
        "https://h.example/x/tokens?region=eu",
        "https://h.example/docs#section-2",
        "passwordPolicy=strict",
        "Server=db;Database=app",
    ] {
        assert_eq!(
            config_messages(&mut c, "settings", value),
            Vec::<String>::new(),
            "{value}"
        );
    }
    c.spec.config = [("region".to_string(), "x".repeat(5000))].into();
    assert!(messages(c.validate_cel())[0].contains("values at most 4096"));
}

#[test]
fn invites_are_for_users_and_never_make_admins() {
    let mut m = project_user("platform", "p", "billing", "a@x.io");
    m.spec.invite = Some(ProjectInvite {
        organization_role: "member".into(),
    });
    assert_eq!(messages(m.validate_cel()), Vec::<String>::new());
    m.spec.invite = Some(ProjectInvite {
        organization_role: "admin".into(),
    });
    assert!(
        messages(m.validate_cel())[0]
            .contains("a project invite cannot make an organization admin")
    );
    let mut g = project_subject("platform", "g", "billing", SubjectKind::Group, "ops", None);
    g.spec.invite = Some(ProjectInvite {
        organization_role: "member".into(),
    });
    assert_eq!(
        messages(g.validate_cel()),
        [
            "spec.invite: only users are invited: groups and machine identities are added to the organization first"
        ]
    );
}

#[test]
fn projects_do_not_move_and_memberships_keep_their_project() {
    let old = project(
        "platform",
        "billing",
        OrganizationKind::Organization,
        "acme",
    );
    let mut new = old.clone();
    new.spec.organization_ref = OrganizationRef {
        kind: OrganizationKind::SubOrganization,
        name: "eng".into(),
    };
    let m = messages(new.validate_cel_update(&old));
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(m[0].starts_with("spec.organizationRef: is immutable: a project stays in the organization that created it"), "{m:?}");

    let old = project_user("platform", "p", "billing", "a@x.io");
    let mut new = old.clone();
    new.spec.project_ref.name = "payroll".into();
    assert!(
        messages(new.validate_cel_update(&old))[0].starts_with("spec.projectRef: is immutable")
    );
    let mut new = old.clone();
    new.spec.roles = vec![role("no-access"), role("viewer")];
    assert!(messages(new.validate_cel())[0].contains("no-access cannot be combined"));
}
