-- Groups and machine identities, each owned by the organization that created it; what a
-- group contains; and the root's groups and identities added to its sub-organizations.
-- Every rule of the domain that the data can show is a constraint here too.

CREATE TABLE groups (
    id                TEXT PRIMARY KEY,
    source_uid        TEXT UNIQUE,
    source_name       TEXT,
    managed           BIGINT NOT NULL CHECK (managed IN (0, 1)),
    -- The owner, and its root (itself for a root): checked together by the key below.
    organization_id   TEXT NOT NULL,
    root_id           TEXT NOT NULL,
    -- `namespace/name` of the Kubernetes object.
    name              TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 317),
    display_name      TEXT NOT NULL CHECK (length(display_name) BETWEEN 1 AND 253),
    deletion_policy   TEXT NOT NULL CHECK (deletion_policy IN ('Delete', 'Orphan')),
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    UNIQUE (organization_id, name),
    UNIQUE (id, organization_id),
    FOREIGN KEY (organization_id, root_id) REFERENCES organizations (id, root_id) ON DELETE CASCADE
);

CREATE TABLE machine_identities (
    id                TEXT PRIMARY KEY,
    source_uid        TEXT UNIQUE,
    source_name       TEXT,
    managed           BIGINT NOT NULL CHECK (managed IN (0, 1)),
    organization_id   TEXT NOT NULL,
    root_id           TEXT NOT NULL,
    name              TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 317),
    display_name      TEXT NOT NULL CHECK (length(display_name) BETWEEN 1 AND 253),
    deletion_policy   TEXT NOT NULL CHECK (deletion_policy IN ('Delete', 'Orphan')),
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    UNIQUE (organization_id, name),
    UNIQUE (id, organization_id),
    FOREIGN KEY (organization_id, root_id) REFERENCES organizations (id, root_id) ON DELETE CASCADE
);

CREATE TABLE group_members (
    group_id          TEXT NOT NULL,
    -- The group's organization and its depth (0 root, 1 sub-organization), checked by keys.
    organization_id   TEXT NOT NULL,
    org_depth         BIGINT NOT NULL,
    member_kind       TEXT NOT NULL CHECK (member_kind IN ('User', 'Group')),
    user_id           TEXT,
    member_group_id   TEXT,
    CHECK ((member_kind = 'User') = (user_id IS NOT NULL)),
    CHECK ((member_kind = 'Group') = (member_group_id IS NOT NULL)),
    -- Nesting is for sub-organization groups, and a group does not contain itself.
    CHECK (member_kind = 'User' OR (org_depth = 1 AND member_group_id <> group_id)),
    UNIQUE (group_id, user_id),
    UNIQUE (group_id, member_group_id),
    FOREIGN KEY (group_id, organization_id) REFERENCES groups (id, organization_id) ON DELETE CASCADE,
    FOREIGN KEY (organization_id, org_depth) REFERENCES organizations (id, depth),
    -- A group's users are members of its organization; the membership's removal takes them
    -- out of the organization's groups in the same transaction.
    FOREIGN KEY (organization_id, user_id) REFERENCES memberships (organization_id, user_id) ON DELETE CASCADE,
    -- A nested group belongs to the same organization.
    FOREIGN KEY (member_group_id, organization_id) REFERENCES groups (id, organization_id) ON DELETE CASCADE
);

CREATE INDEX group_members_member_group ON group_members (member_group_id);
CREATE INDEX group_members_user ON group_members (organization_id, user_id);

-- A root's group or machine identity added to one of its sub-organizations, with roles there.
CREATE TABLE subject_memberships (
    id                TEXT PRIMARY KEY,
    source_uid        TEXT UNIQUE,
    source_name       TEXT,
    managed           BIGINT NOT NULL CHECK (managed IN (0, 1)),
    organization_id   TEXT NOT NULL,
    root_id           TEXT NOT NULL,
    -- Sub-organizations only: a root's own groups and identities are there already.
    org_depth         BIGINT NOT NULL CHECK (org_depth = 1),
    subject_kind      TEXT NOT NULL CHECK (subject_kind IN ('Group', 'MachineIdentity')),
    group_id          TEXT,
    identity_id       TEXT,
    roles             TEXT NOT NULL,
    deletion_policy   TEXT NOT NULL CHECK (deletion_policy IN ('Delete', 'Orphan')),
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    CHECK ((subject_kind = 'Group') = (group_id IS NOT NULL)),
    CHECK ((subject_kind = 'MachineIdentity') = (identity_id IS NOT NULL)),
    UNIQUE (organization_id, group_id),
    UNIQUE (organization_id, identity_id),
    FOREIGN KEY (organization_id, root_id) REFERENCES organizations (id, root_id) ON DELETE CASCADE,
    FOREIGN KEY (organization_id, org_depth) REFERENCES organizations (id, depth),
    -- Only the root's own groups and identities flow down; removing one revokes it everywhere.
    FOREIGN KEY (group_id, root_id) REFERENCES groups (id, organization_id) ON DELETE CASCADE,
    FOREIGN KEY (identity_id, root_id) REFERENCES machine_identities (id, organization_id) ON DELETE CASCADE
);

CREATE INDEX subject_memberships_group ON subject_memberships (group_id);
CREATE INDEX subject_memberships_identity ON subject_memberships (identity_id);
