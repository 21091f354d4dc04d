//! Slugs and user identity (DESIGN rule 6), and the DNS names Kubernetes gives objects and
//! namespaces. Display names are checked by the CRD schema alone.

/// Longest slug, in characters.
pub const MAX_LEN: usize = 64;

/// The slug an organization has: `spec.slug` when set, else `metadata.name`.
pub fn effective_slug<'a>(name: &'a str, spec_slug: Option<&'a str>) -> &'a str {
    spec_slug.unwrap_or(name)
}

/// The field a slug comes from, for a problem about it: `spec.slug` when set, else
/// `metadata.name`.
pub(super) fn slug_field(spec_slug: Option<&str>) -> &'static str {
    if spec_slug.is_some() {
        "spec.slug"
    } else {
        "metadata.name"
    }
}

/// Whether `s` is 1–64 lowercase ASCII letters, digits and hyphens.
pub fn is_valid_slug(s: &str) -> bool {
    (1..=MAX_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Users are identified by email, compared case-insensitively.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// One part of a DNS name: lowercase letters, digits and '-', starting and ending with a letter
/// or digit.
fn is_dns_part(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A namespace name (RFC 1123 label): one part of at most 63 characters.
pub(crate) fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && is_dns_part(s)
}

/// An object name as the API server checks it (`IsDNS1123Subdomain`): at most 253 characters
/// in all, with no limit on one dot-separated part.
pub(crate) fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_part)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in ["a", "eng", "sales-emea", "team-42", &"a".repeat(64), "-"] {
            assert!(is_valid_slug(ok), "{ok:?} should be a valid slug");
        }
        for bad in [
            "",
            "Eng",
            "eng_team",
            "eng.team",
            "eng team",
            "ä",
            &"a".repeat(65),
        ] {
            assert!(!is_valid_slug(bad), "{bad:?} should not be a valid slug");
        }
    }

    #[test]
    fn effective_values() {
        assert_eq!(effective_slug("eng", None), "eng");
        assert_eq!(effective_slug("eng", Some("engineering")), "engineering");
        assert_eq!(normalize_email(" Alice@Example.COM "), "alice@example.com");
    }
}
