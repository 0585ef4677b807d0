-- An append group in one statement, so one round trip (prepared once per connection, run in
-- its own implicit transaction): take the lock on the head row (held until COMMIT, which keeps
-- positions gap-free and visible in order across processes), check each request's expected
-- version against the stream's (and against earlier requests of the group), assign positions
-- and versions, insert the events, their tags and the streams' versions, move the head and
-- notify listeners at COMMIT.
--
-- Requests: r_streams, r_expected (-1 any, -2 no stream, N >= 0 exactly N; 0 = no stream) and
-- r_counts (how many of the e_* events, in order, are the request's). Returns one row a request,
-- in order: ('ok', first position, last position, the stream's version after it) or
-- ('conflict', NULL, NULL, the stream's actual version). When any event id is already stored the
-- function writes nothing and returns one row ('known', ...): the caller then takes the path
-- that tells a retry of a stored event from a reuse of its id.
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
    p_at timestamptz
) RETURNS TABLE (outcome text, first_position bigint, last_position bigint, version bigint)
LANGUAGE plpgsql AS $$
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
        IF (expected = -2 AND cur <> 0) OR (expected >= 0 AND expected <> cur) THEN
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
