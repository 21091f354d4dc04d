-- Projects, what they use, and who is in them. A project and everything it uses belong to one
-- organization, and its members are what that organization can see: the keys below hold
-- both, so no row can point across organizations.

-- App connections, gateways and relays: per organization, never inherited. Configuration only;
-- `credentials` is a reference to a Kubernetes Secret (namespace and name), never its data.
CREATE TABLE org_resources (
    id                TEXT PRIMARY KEY,
    source_uid        TEXT UNIQUE,
    source_name       TEXT,
    managed           BIGINT NOT NULL CHECK (managed IN (0, 1)),
    organization_id   TEXT NOT NULL,
    root_id           TEXT NOT NULL,
    kind              TEXT NOT NULL CHECK (kind IN ('AppConnection', 'Gateway', 'Relay')),
    -- `namespace/name` of the Kubernetes object.
    name              TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 317),
    display_name      TEXT NOT NULL CHECK (length(display_name) BETWEEN 1 AND 253),
    app               TEXT,
    config            TEXT NOT NULL,
    credentials       TEXT,
    -- A gateway's relay, of the same organization: all three set or none.
    relay_id          TEXT,
    relay_org_id      TEXT,
    relay_kind        TEXT CHECK (relay_kind = 'Relay'),
    deletion_policy   TEXT NOT NULL CHECK (deletion_policy IN ('Delete', 'Orphan')),
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    CHECK ((kind = 'AppConnection') = (app IS NOT NULL)),
    CHECK ((relay_id IS NULL) = (relay_org_id IS NULL) AND (relay_id IS NULL) = (relay_kind IS NULL)),
    CHECK (relay_id IS NULL OR (kind = 'Gateway' AND relay_org_id = organization_id)),
    UNIQUE (organization_id, kind, name),
    UNIQUE (id, organization_id, kind),
    FOREIGN KEY (organization_id, root_id) REFERENCES organizations (id, root_id) ON DELETE CASCADE,
    FOREIGN KEY (relay_id, relay_org_id, relay_kind) REFERENCES org_resources (id, organization_id, kind) ON DELETE SET NULL
);

CREATE INDEX org_resources_relay ON org_resources (relay_id);

CREATE TABLE projects (
    id                TEXT PRIMARY KEY,
    source_uid        TEXT UNIQUE,
    source_name       TEXT,
    managed           BIGINT NOT NULL CHECK (managed IN (0, 1)),
    organization_id   TEXT NOT NULL,
    root_id           TEXT NOT NULL,
    name              TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 317),
    slug              TEXT NOT NULL CHECK (length(slug) BETWEEN 1 AND 64),
    display_name      TEXT NOT NULL CHECK (length(display_name) BETWEEN 1 AND 253),
    description       TEXT,
    -- The project's gateway, of the same organization: all three set or none.
    gateway_id        TEXT,
    gateway_org_id    TEXT,
    gateway_kind      TEXT CHECK (gateway_kind = 'Gateway'),
    deletion_policy   TEXT NOT NULL CHECK (deletion_policy IN ('Delete', 'Orphan')),
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    CHECK ((gateway_id IS NULL) = (gateway_org_id IS NULL) AND (gateway_id IS NULL) = (gateway_kind IS NULL)),
    CHECK (gateway_id IS NULL OR gateway_org_id = organization_id),
    -- Projects are scoped to their organization: slugs are unique there.
    UNIQUE (organization_id, slug),
    UNIQUE (id, organization_id),
    FOREIGN KEY (organization_id, root_id) REFERENCES organizations (id, root_id) ON DELETE CASCADE,
    FOREIGN KEY (gateway_id, gateway_org_id, gateway_kind) REFERENCES org_resources (id, organization_id, kind) ON DELETE SET NULL
);

CREATE INDEX projects_gateway ON projects (gateway_id);

-- The app connections a project uses: its own organization's.
CREATE TABLE project_connections (
    project_id        TEXT NOT NULL,
    organization_id   TEXT NOT NULL,
    connection_id     TEXT NOT NULL,
    connection_kind   TEXT NOT NULL CHECK (connection_kind = 'AppConnection'),
    PRIMARY KEY (project_id, connection_id),
    FOREIGN KEY (project_id, organization_id) REFERENCES projects (id, organization_id) ON DELETE CASCADE,
    FOREIGN KEY (connection_id, organization_id, connection_kind) REFERENCES org_resources (id, organization_id, kind) ON DELETE CASCADE
);

CREATE INDEX project_connections_connection ON project_connections (connection_id);

-- Who is in a project, with project roles. Exactly one subject column is set, and each one's
-- key says where the organization got it from:
--   user_id             a member of the project's organization (removing that membership
--                       removes this row in the same transaction);
--   group_id / identity_id
--                       the organization's own group or identity;
--   shared_group_id / shared_identity_id
--                       a root's group or identity added to the project's sub-organization
--                       (removing it from the sub-organization removes this row).
CREATE TABLE project_memberships (
    id                 TEXT PRIMARY KEY,
    source_uid         TEXT UNIQUE,
    source_name        TEXT,
    managed            BIGINT NOT NULL CHECK (managed IN (0, 1)),
    project_id         TEXT NOT NULL,
    organization_id    TEXT NOT NULL,
    subject_kind       TEXT NOT NULL CHECK (subject_kind IN ('User', 'Group', 'MachineIdentity')),
    user_id            TEXT,
    group_id           TEXT,
    shared_group_id    TEXT,
    identity_id        TEXT,
    shared_identity_id TEXT,
    roles              TEXT NOT NULL,
    deletion_policy    TEXT NOT NULL CHECK (deletion_policy IN ('Delete', 'Orphan')),
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    CHECK (group_id IS NULL OR shared_group_id IS NULL),
    CHECK (identity_id IS NULL OR shared_identity_id IS NULL),
    CHECK ((subject_kind = 'User') = (user_id IS NOT NULL)),
    CHECK ((subject_kind = 'Group') = (group_id IS NOT NULL OR shared_group_id IS NOT NULL)),
    CHECK ((subject_kind = 'MachineIdentity') = (identity_id IS NOT NULL OR shared_identity_id IS NOT NULL)),
    UNIQUE (project_id, user_id),
    UNIQUE (project_id, group_id),
    UNIQUE (project_id, shared_group_id),
    UNIQUE (project_id, identity_id),
    UNIQUE (project_id, shared_identity_id),
    FOREIGN KEY (project_id, organization_id) REFERENCES projects (id, organization_id) ON DELETE CASCADE,
    FOREIGN KEY (organization_id, user_id) REFERENCES memberships (organization_id, user_id) ON DELETE CASCADE,
    FOREIGN KEY (group_id, organization_id) REFERENCES groups (id, organization_id) ON DELETE CASCADE,
    FOREIGN KEY (identity_id, organization_id) REFERENCES machine_identities (id, organization_id) ON DELETE CASCADE,
    FOREIGN KEY (organization_id, shared_group_id) REFERENCES subject_memberships (organization_id, group_id) ON DELETE CASCADE,
    FOREIGN KEY (organization_id, shared_identity_id) REFERENCES subject_memberships (organization_id, identity_id) ON DELETE CASCADE
);

CREATE INDEX project_memberships_user ON project_memberships (user_id);
CREATE INDEX project_memberships_group ON project_memberships (group_id);
CREATE INDEX project_memberships_shared_group ON project_memberships (shared_group_id);
CREATE INDEX project_memberships_identity ON project_memberships (identity_id);
CREATE INDEX project_memberships_shared_identity ON project_memberships (shared_identity_id);
CREATE INDEX project_memberships_org_user ON project_memberships (organization_id, user_id);
