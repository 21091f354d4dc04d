//! The object model the rules read and write: the objects to check ([`ObjectSet`]), what a
//! check returns ([`Outcome`], [`Accepted`]), and how an object or a subject is named in a
//! problem or an index.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::problem::{ObjectKey, Problem};
use super::slug::normalize_email;
use crate::api::{
    AppConnection, Gateway, Group, MachineIdentity, OrgMembership, Organization, OrganizationRef,
    Project, ProjectMembership, Relay, SubOrganization, Subject, SubjectKind,
};

/// The objects to check, as plain data.
#[derive(Debug, Default, Clone)]
pub struct ObjectSet {
    /// Root organizations.
    pub organizations: Vec<Organization>,
    /// Sub-organizations.
    pub sub_organizations: Vec<SubOrganization>,
    /// Memberships. Each must have `metadata.namespace` set.
    pub memberships: Vec<OrgMembership>,
    /// Groups. Each must have `metadata.namespace` set.
    pub groups: Vec<Group>,
    /// Machine identities. Each must have `metadata.namespace` set.
    pub identities: Vec<MachineIdentity>,
    /// App connections. Each must have `metadata.namespace` set.
    pub connections: Vec<AppConnection>,
    /// Gateways. Each must have `metadata.namespace` set.
    pub gateways: Vec<Gateway>,
    /// Relays. Each must have `metadata.namespace` set.
    pub relays: Vec<Relay>,
    /// Projects. Each must have `metadata.namespace` set.
    pub projects: Vec<Project>,
    /// Project memberships. Each must have `metadata.namespace` set.
    pub project_memberships: Vec<ProjectMembership>,
    /// Labels of the namespaces whose labels are known. A membership in a namespace missing
    /// here cannot be checked against `memberNamespaces` and gets a warning.
    pub namespaces: HashMap<String, BTreeMap<String, String>>,
    /// Objects that exist but were already rejected on their own (by the schema, or left out
    /// for a store conflict). References to them are neither "not found" nor accepted. Most
    /// are not in the lists above; an OrgMembership may stay in them, refused, because what
    /// builds on it finds it by its subject, not its name.
    pub rejected: HashSet<ObjectKey>,
    /// The uids of the organizations (roots and subs) and projects whose rows the store holds
    /// (in a cluster, as the last sync left it): a sub-organization holds its root being
    /// deleted only when the store holds its rows, and one created in the very second the
    /// deletion began was there before it when the store holds it
    /// ([`super::organizations::joins_late`]); one created in the same second as another
    /// that claims its slug keeps it ([`precedence`]).
    pub stored: HashSet<String>,
}

impl ObjectSet {
    /// Whether the namespaced object `kind` `namespace/name` exists but was rejected on its
    /// own before the rules saw it ([`ObjectSet::rejected`]): what names it waits, quietly.
    pub fn rejected_on_its_own(&self, kind: &str, namespace: &str, name: &str) -> bool {
        self.rejected
            .contains(&ObjectKey::namespaced(kind, namespace, name))
    }
}

/// Indexes into the [`ObjectSet`] of the objects every rule accepted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Indexes into `organizations`.
    pub organizations: Vec<usize>,
    /// Indexes into `sub_organizations`.
    pub sub_organizations: Vec<usize>,
    /// Indexes into `memberships`.
    pub memberships: Vec<usize>,
    /// Indexes into `groups`.
    pub groups: Vec<usize>,
    /// Indexes into `identities`.
    pub identities: Vec<usize>,
    /// Indexes into `connections`.
    pub connections: Vec<usize>,
    /// Indexes into `gateways`.
    pub gateways: Vec<usize>,
    /// Indexes into `relays`.
    pub relays: Vec<usize>,
    /// Indexes into `projects`.
    pub projects: Vec<usize>,
    /// Indexes into `project_memberships`.
    pub project_memberships: Vec<usize>,
    /// The admins who are admins: (index into `sub_organizations`, index into its
    /// `spec.admins`), for accepted sub-organizations only.
    pub admins: Vec<(usize, usize)>,
}

/// What [`crate::domain::check`] found.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Every problem, errors and warnings.
    pub problems: Vec<Problem>,
    /// The objects with no error.
    pub accepted: Accepted,
}

/// Key of an Organization object.
pub fn organization_key(o: &Organization) -> ObjectKey {
    ObjectKey::cluster("Organization", &o.name_any())
}

/// Key of a SubOrganization object.
pub fn sub_organization_key(o: &SubOrganization) -> ObjectKey {
    ObjectKey::cluster("SubOrganization", &o.name_any())
}

/// Key of an OrgMembership object.
pub fn membership_key(m: &OrgMembership) -> ObjectKey {
    namespaced_key(m)
}

/// Key of a Group object.
pub fn group_key(g: &Group) -> ObjectKey {
    namespaced_key(g)
}

/// Key of a MachineIdentity object.
pub fn identity_key(i: &MachineIdentity) -> ObjectKey {
    namespaced_key(i)
}

/// Key of any namespaced object of a suborg kind.
pub fn namespaced_key<K: kube::Resource<DynamicType = ()>>(o: &K) -> ObjectKey {
    ObjectKey::namespaced(
        &K::kind(&()),
        o.meta().namespace.as_deref().unwrap_or_default(),
        o.meta().name.as_deref().unwrap_or_default(),
    )
}

/// Key of a Project object.
pub fn project_key(p: &Project) -> ObjectKey {
    namespaced_key(p)
}

/// Key of a ProjectMembership object.
pub fn project_membership_key(m: &ProjectMembership) -> ObjectKey {
    namespaced_key(m)
}

/// An object's `(namespace, name)`, empty where unset.
pub(super) fn ns_name<K: kube::Resource>(o: &K) -> (&str, &str) {
    (
        o.meta().namespace.as_deref().unwrap_or_default(),
        o.meta().name.as_deref().unwrap_or_default(),
    )
}

/// How a subject is identified within one organization: kind plus normalized email, or
/// `namespace/name` for a group or machine identity (the namespace defaults to the
/// membership's).
pub(super) fn subject_id(m: &OrgMembership) -> (SubjectKind, String) {
    subject_id_of(
        &m.spec.subject,
        m.metadata.namespace.as_deref().unwrap_or_default(),
    )
}

/// How `s`, named by an object in namespace `own`, is identified: kind plus normalized email,
/// or `namespace/name`.
pub(super) fn subject_id_of(s: &Subject, own: &str) -> (SubjectKind, String) {
    let id = match s.kind {
        SubjectKind::User => normalize_email(s.email.as_deref().unwrap_or_default()),
        _ => format!(
            "{}/{}",
            s.namespace.as_deref().unwrap_or(own),
            s.name.as_deref().unwrap_or_default()
        ),
    };
    (s.kind, id)
}

/// An organization as a message names it: `SubOrganization "eng"`.
pub(super) fn describe_org(r: &OrganizationRef) -> String {
    format!("{} {:?}", r.kind, r.name)
}

/// Among objects competing for one unique value, the one that keeps it: the oldest by
/// `creationTimestamp`; of those created in one second, one whose rows the store already
/// holds (`stored`: it took the value in an earlier sync, and keeps it rather than lose it to
/// a newcomer of that second), then the first by namespace and name. Creation times have
/// whole seconds, and `kubectl apply -f` creates a set within one: the controller sees such a
/// tie, and offline every new object is dated alike ([`crate::manifest::Loader::date`]), so
/// both break it by name, and `validate` names the object the cluster refuses when the
/// cluster sees them together. The index (the first declared) decides only between objects
/// of one name.
pub(super) fn precedence<'a, K: kube::Resource>(
    o: &'a K,
    index: usize,
    stored: &HashSet<String>,
) -> (
    Option<Timestamp>,
    bool,
    Option<&'a str>,
    Option<&'a str>,
    usize,
) {
    let meta = o.meta();
    let incumbent = meta.uid.as_ref().is_some_and(|u| stored.contains(u));
    (
        born(o),
        !incumbent,
        meta.namespace.as_deref(),
        meta.name.as_deref(),
        index,
    )
}

/// When an object was created: its `creationTimestamp`, `None` offline before
/// `Loader::date`.
pub(super) fn born<K: kube::Resource>(o: &K) -> Option<Timestamp> {
    o.meta().creation_timestamp.as_ref().map(|t| t.0)
}

/// The indexes of `list` in [`precedence`] order: the order in which objects competing for a
/// unique value are decided.
pub(super) fn by_precedence<K: kube::Resource>(list: &[K], stored: &HashSet<String>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..list.len()).collect();
    order.sort_by_cached_key(|&i| precedence(&list[i], i, stored));
    order
}
