-- Optimistic concurrency on an explicit row version: a table that has a `version` column gets
-- this function as a BEFORE UPDATE trigger, so every update adds one to it, whoever writes (a
-- statement, an operator's fix), and a writer that read version n can write only if it is still
-- n. (PostgreSQL's xmin did the same by accident of implementation.)
CREATE FUNCTION bump_row_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version + 1;
    RETURN NEW;
END
$$;
