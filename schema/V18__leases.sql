-- Several nodes on one database: leases and the fencing tokens that every effect carries.
--
-- `mall_nodes`: each running node, renewed while it lives (a fair share is the leases over the
-- nodes alive). `mall_leases`: what one node at a time owns (the autonomous core, each
-- projection): its holder (node and process instance), its fencing token (raised each time the
-- lease changes hands) and when it lapses unless renewed.
CREATE TABLE mall_nodes (
    id text PRIMARY KEY,
    instance uuid NOT NULL,
    url text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

CREATE TABLE mall_leases (
    name text PRIMARY KEY,
    holder text,
    instance uuid,
    token bigint NOT NULL DEFAULT 0,
    expires_at timestamptz NOT NULL DEFAULT '-infinity',
    acquired_at timestamptz
);

-- The tag index's foreign key checked (and row-locked) each tag's event one row at a time: most
-- of an append's cost. Tags are written only with their events, in the same statement.
ALTER TABLE mall_event_tags DROP CONSTRAINT mall_event_tags_position_fkey;

-- `mall_append` takes each request's fence (a lease name and token, or NULL): a request whose
-- lease has moved on (another token) or lapsed is refused ('fenced') and writes nothing. The
-- lease row is read FOR SHARE, so a takeover (which raises the token) waits for appends under
-- the old token to commit, and no append under it follows the takeover.
DROP FUNCTION mall_append(text[], bigint[], integer[], uuid[], text[], smallint[], text[], uuid[], uuid[], bytea[], timestamptz);

CREATE FUNCTION mall_append(
    r_streams text[],
    r_expected bigint[],
    r_counts integer[],
    e_ids uuid[],
    e_types text[],
    e_schemas smallint[],
    e_tags text[],
    e_correlations uuid[],
    e_causations uuid[],
    e_payloads bytea[],
    p_at timestamptz,
    r_leases text[],
    r_tokens bigint[]
) RETURNS TABLE (outcome text, first_position bigint, last_position bigint, version bigint)
LANGUAGE plpgsql
-- Its lookups are by key: a plan cached while the log was small (a sequential scan, then the
-- cheapest) would otherwise be kept by the connection as the log grows.
SET enable_seqscan = off
AS $$
DECLARE
    head bigint;
    nxt bigint;
    total integer := coalesce(array_length(e_ids, 1), 0);
    k integer := 0;
    n integer;
    cur bigint;
    expected bigint;
    versions jsonb;
    touched text[] := '{}';
    p_positions bigint[];
    p_streams text[];
    p_versions bigint[];
BEGIN
    SELECT h.position INTO head FROM mall_log_head h WHERE h.id FOR UPDATE;
    IF EXISTS (SELECT 1 FROM mall_events e WHERE e.event_id = ANY (e_ids)) THEN
        outcome := 'known';
        RETURN NEXT;
        RETURN;
    END IF;
    SELECT coalesce(jsonb_object_agg(s.stream_id, s.version), '{}'::jsonb) INTO versions
      FROM mall_streams s WHERE s.stream_id = ANY (r_streams);
    p_positions := array_fill(NULL::bigint, ARRAY[total]);
    p_streams := array_fill(NULL::text, ARRAY[total]);
    p_versions := array_fill(NULL::bigint, ARRAY[total]);
    nxt := head + 1;
    FOR i IN 1 .. coalesce(array_length(r_streams, 1), 0) LOOP
        n := r_counts[i];
        cur := coalesce((versions ->> r_streams[i])::bigint, 0);
        expected := r_expected[i];
        IF r_leases[i] IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM mall_leases l
             WHERE l.name = r_leases[i] AND l.token = r_tokens[i] AND l.expires_at > clock_timestamp()
               FOR SHARE) THEN
            outcome := 'fenced';
            first_position := NULL;
            last_position := NULL;
            version := cur;
        ELSIF (expected = -2 AND cur <> 0) OR (expected >= 0 AND expected <> cur) THEN
            outcome := 'conflict';
            first_position := NULL;
            last_position := NULL;
            version := cur;
        ELSE
            first_position := nxt;
            FOR j IN 1 .. n LOOP
                p_positions[k + j] := nxt;
                p_streams[k + j] := r_streams[i];
                p_versions[k + j] := cur + j;
                nxt := nxt + 1;
            END LOOP;
            cur := cur + n;
            versions := jsonb_set(versions, ARRAY[r_streams[i]], to_jsonb(cur));
            touched := touched || r_streams[i];
            outcome := 'ok';
            last_position := nxt - 1;
            version := cur;
        END IF;
        k := k + n;
        RETURN NEXT;
    END LOOP;
    IF nxt > head + 1 THEN
        INSERT INTO mall_events (position, event_id, stream_id, stream_version, event_type, schema_version,
                                 recorded_at, tags, correlation_id, causation_id, payload)
        SELECT u.p, u.i, u.s, u.v, u.t, u.sv, p_at,
               CASE WHEN u.tg = '' THEN '{}'::text[] ELSE string_to_array(u.tg, E'\x1f') END,
               u.c, u.ca, u.pl
          FROM unnest(p_positions, p_streams, p_versions, e_ids, e_types, e_schemas, e_tags,
                      e_correlations, e_causations, e_payloads) AS u(p, s, v, i, t, sv, tg, c, ca, pl)
         WHERE u.p IS NOT NULL;
        INSERT INTO mall_event_tags (tag, position)
        SELECT t.tag, u.p
          FROM unnest(p_positions, e_tags) AS u(p, tg),
               unnest(string_to_array(u.tg, E'\x1f')) AS t(tag)
         WHERE u.p IS NOT NULL AND u.tg <> '';
        INSERT INTO mall_streams (stream_id, version)
        SELECT v.key, v.value::bigint FROM jsonb_each_text(versions) AS v
         WHERE v.key = ANY (touched)
        ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version;
        UPDATE mall_log_head SET position = nxt - 1 WHERE mall_log_head.id;
        PERFORM pg_notify('mall_events', (nxt - 1)::text);
    END IF;
END;
$$;
