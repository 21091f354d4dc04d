-- What the API enforces on single fields, enforced by the database too, so a row written around
-- suborg cannot hold a slug or display name the API would refuse. SQLite cannot add a CHECK to
-- an existing table without rebuilding it, so these are triggers on the new values of every
-- write; rows written before stay, and `suborg get` reports them.

CREATE TRIGGER organizations_slug_format_insert BEFORE INSERT ON organizations
WHEN NEW.slug GLOB '*[^a-z0-9-]*'
BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: organizations_slug_format'); END;
CREATE TRIGGER organizations_slug_format_update BEFORE UPDATE OF slug ON organizations
WHEN NEW.slug GLOB '*[^a-z0-9-]*'
BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: organizations_slug_format'); END;

CREATE TRIGGER projects_slug_format_insert BEFORE INSERT ON projects
WHEN NEW.slug GLOB '*[^a-z0-9-]*'
BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: projects_slug_format'); END;
CREATE TRIGGER projects_slug_format_update BEFORE UPDATE OF slug ON projects
WHEN NEW.slug GLOB '*[^a-z0-9-]*'
BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: projects_slug_format'); END;

CREATE TRIGGER organizations_display_name_trimmed_insert BEFORE INSERT ON organizations
WHEN NEW.display_name <> trim(NEW.display_name)
BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: organizations_display_name_trimmed'); END;
CREATE TRIGGER organizations_display_name_trimmed_update BEFORE UPDATE OF display_name ON organizations
WHEN NEW.display_name <> trim(NEW.display_name)
BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: organizations_display_name_trimmed'); END;

CREATE TRIGGER groups_display_name_trimmed_insert BEFORE INSERT ON groups
WHEN NEW.display_name <> trim(NEW.display_name)
BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: groups_display_name_trimmed'); END;
CREATE TRIGGER groups_display_name_trimmed_update BEFORE UPDATE OF display_name ON groups
WHEN NEW.display_name <> trim(NEW.display_name)
BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: groups_display_name_trimmed'); END;

CREATE TRIGGER machine_identities_display_name_trimmed_insert BEFORE INSERT ON machine_identities
WHEN NEW.display_name <> trim(NEW.display_name)
BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: machine_identities_display_name_trimmed'); END;
CREATE TRIGGER machine_identities_display_name_trimmed_update BEFORE UPDATE OF display_name ON machine_identities
WHEN NEW.display_name <> trim(NEW.display_name)
BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: machine_identities_display_name_trimmed'); END;

CREATE TRIGGER org_resources_display_name_trimmed_insert BEFORE INSERT ON org_resources
WHEN NEW.display_name <> trim(NEW.display_name)
BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: org_resources_display_name_trimmed'); END;
CREATE TRIGGER org_resources_display_name_trimmed_update BEFORE UPDATE OF display_name ON org_resources
WHEN NEW.display_name <> trim(NEW.display_name)
BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: org_resources_display_name_trimmed'); END;

CREATE TRIGGER projects_display_name_trimmed_insert BEFORE INSERT ON projects
WHEN NEW.display_name <> trim(NEW.display_name)
BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: projects_display_name_trimmed'); END;
CREATE TRIGGER projects_display_name_trimmed_update BEFORE UPDATE OF display_name ON projects
WHEN NEW.display_name <> trim(NEW.display_name)
BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: projects_display_name_trimmed'); END;
