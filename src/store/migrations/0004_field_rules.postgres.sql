-- What the API enforces on single fields, enforced by the database too, so a row written around
-- suborg cannot hold a slug or display name the API would refuse. NOT VALID: checked on every
-- write from now on, while rows written before stay (a migration must not fail on them);
-- `suborg get` reports those.

ALTER TABLE organizations ADD CONSTRAINT organizations_slug_format
    CHECK (slug ~ '^[a-z0-9-]+$') NOT VALID;
ALTER TABLE projects ADD CONSTRAINT projects_slug_format
    CHECK (slug ~ '^[a-z0-9-]+$') NOT VALID;

ALTER TABLE organizations ADD CONSTRAINT organizations_display_name_trimmed
    CHECK (display_name = trim(display_name)) NOT VALID;
ALTER TABLE groups ADD CONSTRAINT groups_display_name_trimmed
    CHECK (display_name = trim(display_name)) NOT VALID;
ALTER TABLE machine_identities ADD CONSTRAINT machine_identities_display_name_trimmed
    CHECK (display_name = trim(display_name)) NOT VALID;
ALTER TABLE org_resources ADD CONSTRAINT org_resources_display_name_trimmed
    CHECK (display_name = trim(display_name)) NOT VALID;
ALTER TABLE projects ADD CONSTRAINT projects_display_name_trimmed
    CHECK (display_name = trim(display_name)) NOT VALID;
