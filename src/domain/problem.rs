//! What a rule reports: which object, which field, which rule, and a message a person can act on.

use serde::Serialize;
use std::fmt;

/// How bad a problem is. Errors are what the API server or the controller would refuse;
/// warnings are what suborg cannot check offline or what grants nothing (an expired role).
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Accepted, but worth a look.
    Warning,
    /// Rejected.
    Error,
}

/// The rule a problem breaks. A fixed, bounded set: it is the condition reason and Event reason
/// the controller reports and the label metrics are counted by, so it never carries data.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    // Reading manifests.
    /// A file could not be read.
    UnreadableFile,
    /// A file is larger than the limit.
    FileTooLarge,
    /// A file is not UTF-8.
    InvalidEncoding,
    /// A file is not valid YAML.
    InvalidYaml,
    /// A file holds no objects.
    EmptyManifest,
    /// A document lacks `apiVersion`, `kind` or `metadata.name`.
    MissingTypeMeta,
    /// A `suborg.io` object has an apiVersion this version does not serve.
    UnsupportedApiVersion,
    /// A `suborg.io` kind this version does not serve.
    UnknownKind,
    /// Two documents declare the same object.
    DuplicateObject,
    // One object (schema and CEL rules, as the API server applies them).
    /// A field the kind does not have.
    UnknownField,
    /// A type, pattern, enum, length or required-field violation.
    SchemaViolation,
    /// A slug that is not 1–64 lowercase letters, digits and hyphens.
    InvalidSlug,
    /// A sub-organization whose parent is not a root organization.
    NestingViolation,
    /// Authentication configured on a sub-organization.
    AuthenticationNotAllowed,
    /// A field that cannot change after creation was changed.
    ImmutableField,
    /// A temporary role with an impossible window.
    InvalidTemporaryAccess,
    /// Roles that cannot be combined.
    ConflictingRoles,
    /// A subject named the wrong way for its kind.
    InvalidSubject,
    /// A namespace selector that cannot be evaluated.
    InvalidSelector,
    /// Incomplete authentication settings.
    InvalidAuthentication,
    /// Any other rule of the schema.
    RuleViolation,
    // Across objects.
    /// The parent organization does not exist.
    ParentNotFound,
    /// Two organizations with one slug under one parent (or two roots with one slug).
    SlugConflict,
    /// An Organization and a SubOrganization with one name.
    NameConflict,
    /// An admin of a sub-organization is not a member of its root.
    AdminNotInRoot,
    /// A sub-organization lists one admin twice.
    DuplicateAdmin,
    /// The organization a membership targets does not exist.
    TargetNotFound,
    /// A sub-organization member is not a member of the root.
    SubjectNotInRoot,
    /// A group or machine identity that is not declared, or not one the target may add.
    SubjectNotFound,
    /// A group or identity given a membership in the organization that already owns it.
    SubjectOwnedByTarget,
    /// The same subject twice in one organization.
    DuplicateMembership,
    /// A user whose email domain the root does not allow.
    EmailDomainNotAllowed,
    /// A membership in a namespace the target's `memberNamespaces` does not admit.
    NamespaceNotAllowed,
    /// The labels of a membership's namespace are unknown offline.
    NamespaceUnknown,
    /// A temporary role that has already expired.
    RoleExpired,
    /// A group or identity added to an organization that cannot see it (a sibling's, or
    /// another root's).
    SubjectNotVisible,
    /// A group's user who is not a member of the group's organization.
    GroupMemberNotInOrganization,
    /// A root group listing a group: nesting is for sub-organization groups.
    NestedGroupNotAllowed,
    /// A nested group owned by another organization.
    NestedGroupOutsideOrganization,
    /// Nested groups that contain each other (or a group listing itself).
    GroupCycle,
    /// The same member listed twice in one group.
    DuplicateGroupMember,
    /// A credential-looking key in the non-secret `config` of a connection, gateway or relay.
    CredentialInConfig,
    /// A project invite that cannot be one (not a user, or an organization admin).
    InvalidInvite,
    /// A project invite in a sub-organization's project: users are provisioned at the root.
    InviteOutsideRoot,
    /// A Secret referenced from another namespace.
    SecretOutsideNamespace,
    /// A referenced project, app connection, gateway or relay that does not exist.
    ReferenceNotFound,
    /// An app connection, gateway or relay of another organization.
    ResourceNotInOrganization,
    /// A project member that the project's organization cannot see (not added to it).
    SubjectNotInOrganization,
    /// The same object referenced twice in one list.
    DuplicateReference,
}

impl Reason {
    /// The PascalCase name, as used in conditions, Events and metrics.
    pub fn as_str(self) -> &'static str {
        use Reason::*;
        match self {
            UnreadableFile => "UnreadableFile",
            FileTooLarge => "FileTooLarge",
            InvalidEncoding => "InvalidEncoding",
            InvalidYaml => "InvalidYaml",
            EmptyManifest => "EmptyManifest",
            MissingTypeMeta => "MissingTypeMeta",
            UnsupportedApiVersion => "UnsupportedApiVersion",
            UnknownKind => "UnknownKind",
            DuplicateObject => "DuplicateObject",
            UnknownField => "UnknownField",
            SchemaViolation => "SchemaViolation",
            InvalidSlug => "InvalidSlug",
            NestingViolation => "NestingViolation",
            AuthenticationNotAllowed => "AuthenticationNotAllowed",
            ImmutableField => "ImmutableField",
            InvalidTemporaryAccess => "InvalidTemporaryAccess",
            ConflictingRoles => "ConflictingRoles",
            InvalidSubject => "InvalidSubject",
            InvalidSelector => "InvalidSelector",
            InvalidAuthentication => "InvalidAuthentication",
            RuleViolation => "RuleViolation",
            ParentNotFound => "ParentNotFound",
            SlugConflict => "SlugConflict",
            NameConflict => "NameConflict",
            AdminNotInRoot => "AdminNotInRoot",
            DuplicateAdmin => "DuplicateAdmin",
            TargetNotFound => "TargetNotFound",
            SubjectNotInRoot => "SubjectNotInRoot",
            SubjectNotFound => "SubjectNotFound",
            SubjectOwnedByTarget => "SubjectOwnedByTarget",
            DuplicateMembership => "DuplicateMembership",
            EmailDomainNotAllowed => "EmailDomainNotAllowed",
            NamespaceNotAllowed => "NamespaceNotAllowed",
            NamespaceUnknown => "NamespaceUnknown",
            RoleExpired => "RoleExpired",
            SubjectNotVisible => "SubjectNotVisible",
            GroupMemberNotInOrganization => "GroupMemberNotInOrganization",
            NestedGroupNotAllowed => "NestedGroupNotAllowed",
            NestedGroupOutsideOrganization => "NestedGroupOutsideOrganization",
            GroupCycle => "GroupCycle",
            DuplicateGroupMember => "DuplicateGroupMember",
            CredentialInConfig => "CredentialInConfig",
            InvalidInvite => "InvalidInvite",
            InviteOutsideRoot => "InviteOutsideRoot",
            SecretOutsideNamespace => "SecretOutsideNamespace",
            ReferenceNotFound => "ReferenceNotFound",
            ResourceNotInOrganization => "ResourceNotInOrganization",
            SubjectNotInOrganization => "SubjectNotInOrganization",
            DuplicateReference => "DuplicateReference",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies one Kubernetes object: kind, namespace (for namespaced kinds) and name.
#[derive(Serialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// Kind, e.g. `SubOrganization`.
    pub kind: String,
    /// Namespace, for namespaced kinds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
}

impl ObjectKey {
    /// A key for a cluster-scoped object.
    pub fn cluster(kind: &str, name: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            namespace: None,
            name: name.to_owned(),
        }
    }

    /// A key for a namespaced object.
    pub fn namespaced(kind: &str, namespace: &str, name: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            namespace: Some(namespace.to_owned()),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{}/{}", self.kind, ns, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

/// One broken rule.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// The rule, as a fixed PascalCase reason.
    pub reason: Reason,
    /// The object the problem is about, when one could be identified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectKey>,
    /// Path of the offending field (`spec.organizationRef.kind`), or empty for the whole object.
    pub field: String,
    /// What is wrong, and what to do about it.
    pub message: String,
    /// Whether it ends without a change to any object: it waits for a temporary role that
    /// starts later. kstatus reads such an object as `Reconciling`, not `Stalled`.
    #[serde(skip)]
    pub clears_on_its_own: bool,
}

impl Problem {
    /// The problem, said to end on its own when `waits` (see [`Problem::clears_on_its_own`]).
    pub fn clearing_on_its_own(mut self, waits: bool) -> Self {
        self.clears_on_its_own = waits;
        self
    }

    /// An error about `object`'s `field`.
    pub fn error(
        reason: Reason,
        object: &ObjectKey,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Error,
            reason,
            object: Some(object.clone()),
            field: field.into(),
            message: message.into(),
            clears_on_its_own: false,
        }
    }

    /// A warning about `object`'s `field`.
    pub fn warning(
        reason: Reason,
        object: &ObjectKey,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(reason, object, field, message)
        }
    }

    /// An error that belongs to no particular object (an unreadable file, say).
    pub fn detached(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            reason,
            object: None,
            field: String::new(),
            message: message.into(),
            clears_on_its_own: false,
        }
    }

    /// Whether the problem rejects the object.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}
