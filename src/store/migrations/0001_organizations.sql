-- One schema for SQLite and PostgreSQL: portable types only (TEXT, BIGINT), and every
-- invariant of the domain as a constraint, so no bug above the database can break it.

CREATE TABLE organizations (
    id                TEXT PRIMARY KEY,
    -- The Kubernetes object the row came from (its uid; offline, Kind/name). NULL for rows
    -- suborg did not create, which it never overwrites unless adoption is asked for.
    source_uid        TEXT UNIQUE,
    source_name       TEXT,
    managed           BIGINT NOT NULL CHECK (managed IN (0, 1)),
    -- 0 for a root, 1 for a sub-organization: one level of nesting, never more.
    depth             BIGINT NOT NULL CHECK (depth IN (0, 1)),
    parent_id         TEXT,
    -- Always 0 when set: the foreign key below then only matches a root parent.
    parent_depth      BIGINT CHECK (parent_depth = 0),
    -- '' for roots, the parent's id otherwise: slugs are unique under a parent and among roots.
    parent_key        TEXT NOT NULL,
    root_id           TEXT NOT NULL,
    slug              TEXT NOT NULL CHECK (length(slug) BETWEEN 1 AND 64),
    display_name      TEXT NOT NULL CHECK (length(display_name) BETWEEN 1 AND 64),
    -- Authentication settings (JSON, Secret references only): roots alone carry them.
    auth              TEXT,
    member_namespaces TEXT,
    deletion_policy   TEXT NOT NULL CHECK (deletion_policy IN ('Delete', 'Orphan')),
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    CHECK (
        (depth = 0 AND parent_id IS NULL AND parent_depth IS NULL AND parent_key = '' AND root_id = id)
        OR
        (depth = 1 AND parent_id IS NOT NULL AND parent_depth = 0 AND parent_key = parent_id
            AND root_id = parent_id AND auth IS NULL)
    ),
    UNIQUE (id, depth),
    UNIQUE (id, root_id),
    UNIQUE (parent_key, slug),
    FOREIGN KEY (parent_id, parent_depth) REFERENCES organizations (id, depth) ON DELETE RESTRICT
);

CREATE TABLE users (
    id         TEXT PRIMARY KEY,
    -- Stored lowercased: emails are unique case-insensitively.
    email      TEXT NOT NULL UNIQUE CHECK (email = lower(email) AND length(email) BETWEEN 3 AND 320),
    created_at BIGINT NOT NULL
);

CREATE TABLE memberships (
    id              TEXT PRIMARY KEY,
    source_uid      TEXT UNIQUE,
    source_name     TEXT,
    managed         BIGINT NOT NULL CHECK (managed IN (0, 1)),
    organization_id TEXT NOT NULL,
    -- The organization's root (itself for a root membership), checked by the first key below.
    root_id         TEXT NOT NULL,
    subject_kind    TEXT NOT NULL CHECK (subject_kind IN ('User', 'Group', 'MachineIdentity')),
    user_id         TEXT REFERENCES users (id) ON DELETE RESTRICT,
    -- Roles with their temporary bounds (JSON).
    roles           TEXT NOT NULL,
    deletion_policy TEXT NOT NULL CHECK (deletion_policy IN ('Delete', 'Orphan')),
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    CHECK ((subject_kind = 'User') = (user_id IS NOT NULL)),
    UNIQUE (organization_id, user_id),
    FOREIGN KEY (organization_id, root_id) REFERENCES organizations (id, root_id) ON DELETE CASCADE,
    -- A member of a sub-organization is a member of its root (a root membership refers to
    -- itself); removing the root membership removes the sub-organization ones with it.
    FOREIGN KEY (root_id, user_id) REFERENCES memberships (organization_id, user_id) ON DELETE CASCADE
);

CREATE INDEX memberships_root_user ON memberships (root_id, user_id);
