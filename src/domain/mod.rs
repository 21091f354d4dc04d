//! The rules of the domain as pure functions over plain data: no client, no async, no I/O.
//! The controller and the offline CLI both call [`check`], so they cannot disagree.
//!
//! # Layout
//!
//! - [`model`]: what goes in and comes out: the [`model::ObjectSet`] to check, the
//!   [`model::Outcome`] (problems, and which objects are accepted), and how objects are keyed.
//! - [`lookup`]: the indexes one phase builds and the next reads (who is in which
//!   organization, which groups exist…), each entry accepted or rejected.
//! - [`problem`]: how a broken rule is reported.
//! - The rules, by subject:
//!   - [`organizations`]: the parent is a root (rule 1), slugs are unique under a parent
//!     (rule 6), admins are root members (rule 8).
//!   - [`placement`]: an object's organization exists, and its namespace is one the
//!     organization's `memberNamespaces` admits; every kind but a root starts here.
//!   - [`memberships`]: members of a sub-organization are members of its root (rules 3 and 9),
//!     groups and identities flow down only when added (rule 4), one membership per subject.
//!   - [`groups`]: groups and machine identities belong to their organization (rule 4); group
//!     members belong to the group's organization; sub-organization groups nest their own
//!     groups, without cycles.
//!   - [`projects`]: projects are scoped to the organization that creates them (rule 5); their
//!     members are what that organization can see.
//!   - [`resources`]: app connections, gateways and relays belong to one organization and are
//!     never inherited (rule 5).
//! - Rules of one value, used by the above and by the store: [`slug`] (slugs and email
//!   identity, rule 6), [`temporary`] (temporary roles and their expiry, rule 7),
//!   [`delegation`] (`memberNamespaces` selectors).
//!
//! The rules one object can break by itself (rule 2, authentication only at the root; the
//! patterns of rule 6; the one-level nesting of rule 1 as far as the parent's kind) are in the
//! CRD schema, so the API server refuses them at admission; [`crate::manifest`] applies the same
//! schema offline.
//!
//! # Which function raises which [`Reason`]
//!
//! Reading manifests and one object's schema (outside this module):
//!
//! | reason | raised by |
//! | --- | --- |
//! | `UnreadableFile`, `FileTooLarge` | `cli::files::load_with`, `cli::files::add` |
//! | `EmptyManifest` | `manifest::Loader::add_bytes`, `cli::files::load_with` |
//! | `InvalidEncoding` | `manifest::Loader::add_bytes` |
//! | `InvalidYaml` | `manifest::parse_chunk` |
//! | `MissingTypeMeta` | `manifest::admit_document`, `manifest::namespace`, `manifest::admit` |
//! | `UnsupportedApiVersion`, `UnknownKind` | `manifest::admit_document` |
//! | `DuplicateObject` | `manifest::Loader::merge` |
//! | `UnknownField` | `manifest::admit` |
//! | `SchemaViolation`, `InvalidSlug`, `RuleViolation` | `manifest::admit` (and `manifest::cel_reason`) |
//! | `AuthenticationNotAllowed`, `ImmutableField`, `InvalidSubject`, `InvalidAuthentication`, `CredentialInConfig`, `InvalidInvite` | `manifest::cel_reason`, for `manifest::admit` |
//!
//! Across objects, by [`check`] (a reason the schema also raises says so):
//!
//! | reason | raised by |
//! | --- | --- |
//! | `ParentNotFound` | [`organizations`] `missing_parent`, and `check_sub_organizations` for a root being deleted (`joins_late`) |
//! | `NestingViolation` | [`organizations`] `missing_parent`; the schema's parent kind: `manifest::cel_reason` |
//! | `InvalidSelector` | [`organizations`] `selector_problem`, and as a warning `selector_warning` (a key or value no label can have); the schema: `manifest::cel_reason` |
//! | `SlugConflict` | [`organizations`] `check_roots` and `check_sub_organizations`; [`projects`] `check_projects` |
//! | `NameConflict` | [`organizations`] `check_roots` and `check_sub_organizations` (an Organization and a SubOrganization of one name) |
//! | `DuplicateAdmin` (an error that keeps the sub-organization) | [`organizations`] `check_admins` |
//! | `AdminNotInRoot` (an error that keeps the sub-organization) | [`organizations`] `check_admins_are_members` |
//! | `TargetNotFound` | [`placement`] `resolve` |
//! | `NamespaceNotAllowed`, `NamespaceUnknown` (a warning) | [`placement`] `admission` |
//! | `EmailDomainNotAllowed` | [`memberships`] `refuses_email` (root memberships and project invites) |
//! | `ConflictingRoles` | [`memberships`] `check_sub_users`; the schema: `manifest::cel_reason` |
//! | `SubjectNotInRoot` | [`memberships`] `check_sub_users` |
//! | `SubjectOwnedByTarget` | [`memberships`] `at_root` and `visible_in` |
//! | `SubjectNotVisible` | [`memberships`] `at_root` and `visible_in`; [`projects`] `Placed::group_or_identity` |
//! | `SubjectNotFound` | [`memberships`] `at_root` and `visible_in`; [`groups`] `PlacedGroup::nested_group` (a warning there: the nested group is left out); [`projects`] `Placed::group_or_identity` |
//! | `DuplicateMembership` | [`memberships`] `conclude`; [`projects`] `conclude` |
//! | `InvalidTemporaryAccess` | [`temporary`] `check_roles`; the schema: `manifest::cel_reason` |
//! | `RoleExpired` (a warning) | [`temporary`] `check_roles` |
//! | `DuplicateGroupMember` (an error that keeps the group) | [`groups`] `PlacedGroup::check_members` |
//! | `GroupMemberNotInOrganization` (a warning) | [`groups`] `PlacedGroup::user`, `left_out_nested` |
//! | `NestedGroupNotAllowed`, `NestedGroupOutsideOrganization` | [`groups`] `PlacedGroup::nested_group` |
//! | `GroupCycle` | [`groups`] `PlacedGroup::nested_group` (a group listing itself) and `name_cycles` |
//! | `SecretOutsideNamespace` | [`resources`] `check_kind` |
//! | `ResourceNotInOrganization` | [`resources`] `reference` |
//! | `ReferenceNotFound` | [`resources`] `reference`; [`projects`] `place_membership`, and as a warning `not_ready_named` (a project's connection or gateway refused on its own) |
//! | `DuplicateReference` | [`projects`] `check_references` |
//! | `InviteOutsideRoot` | [`projects`] `Placed::sub_user` |
//! | `SubjectNotInOrganization` | [`projects`] `Placed::root_user`, `Placed::sub_user` and `Placed::group_or_identity` |

pub mod delegation;
pub mod groups;
pub mod lookup;
pub mod memberships;
pub mod model;
pub mod organizations;
pub mod placement;
pub mod problem;
pub mod projects;
pub mod resources;
pub mod slug;
pub mod temporary;
pub mod waiting;

pub use problem::{ObjectKey, Problem, Reason, Severity};

use k8s_openapi::jiff::Timestamp;

use lookup::{Members, Organizations};
use model::{ObjectSet, Outcome};

/// Runs every cross-object rule over `set` and returns every problem plus which objects are
/// accepted. `now` decides which temporary roles have expired.
///
/// The phases run in this order because each needs what the ones before it decided, and each
/// hands that on as a value. Problems are reported on the object that breaks a rule, never
/// again on the objects that depend on it (a membership in a rejected sub-organization is held
/// back quietly: the sub-organization's own problem says what to fix). Linear in the number of
/// objects: every lookup goes through an index a phase built once.
pub fn check(set: &ObjectSet, now: Timestamp) -> Outcome {
    let mut out = Outcome::default();
    // 1–2. The tree: everything else names an organization.
    let roots = organizations::check_roots(set, &mut out);
    let subs = organizations::check_sub_organizations(set, &roots, &mut out);
    let orgs = Organizations { set, roots, subs };
    // 3–4. App connections, gateways and relays, then the projects that use them: none of
    // them needs a membership.
    let resources = resources::check(&orgs, &mut out);
    let projects = projects::check_projects(&orgs, &resources, &mut out);
    // 5. Users' root memberships: users exist at the root, and join it first.
    let mut root_members = memberships::check_root_users(&orgs, now, &mut out);
    // 6. Project invites that provision a user at the root: a root user from then on.
    let invites = projects::check_invites(&orgs, &projects, &root_members, now, &mut out);
    invites.provision(&mut root_members);
    // 6b. Sub-organizations' admins, now that the roots' members are known.
    organizations::check_admins_are_members(set, &root_members, &mut out);
    // 7. Users' sub-organization memberships, now that the roots' members are known.
    let sub_members = memberships::check_sub_users(&orgs, &root_members, now, &mut out);
    // 8. Groups and machine identities: a group's users are its organization's members.
    let owned = groups::check(&orgs, &root_members, &sub_members, &mut out);
    // 9. Groups' and identities' memberships: a root's added to its sub-organizations.
    let added = memberships::check_groups_and_identities(&orgs, &owned, now, &mut out);
    out.accepted.memberships.sort_unstable();
    // 10. Every other project membership: a project's members are what its organization sees.
    let members = Members {
        root: root_members,
        sub: sub_members,
        owned,
        added,
    };
    projects::check_members(&orgs, &projects, &members, invites, now, &mut out);
    out
}
