-- A user row lives as long as a membership names it: the plan removes users whose last
-- membership went, and this index makes that check a lookup. Users left behind by earlier
-- versions go now.
CREATE INDEX memberships_user ON memberships (user_id);
DELETE FROM users WHERE NOT EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = users.id);
