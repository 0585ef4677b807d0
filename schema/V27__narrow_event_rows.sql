-- Narrower event rows: an event's tags as one text, its posting as the index of one of them.
--
-- Until V26 an event row held its tags as a `text[]` (an array header of 24 bytes before its
-- elements: 60 bytes for a signal's two tags) and its posting as a copy of one of them. From V27
-- the tags are one text, joined by U+001F as the writer sends them (a tag cannot hold a control
-- character, `Limits::check`; no tags is ''), and `posting` is the 1-based index of the posted
-- tag among them. The postings index is on that tag (`split_part`), so a tag is read from its
-- postings as before (events/src/postgres.rs, `read_by_tag`). Batches of 100 from eight
-- `pgbench` clients wrote 324 heap bytes and 634 WAL bytes an event before, 281 and 578 after.
-- The function no longer splits each event's tags for its row. Rows already stored are rewritten
-- once (`ALTER TABLE` holds its lock for the rewrite). Nodes older than V27 read tags as an array:
-- upgrade the nodes of one database together, as across V25.
DROP INDEX mall_events_postings;
ALTER TABLE mall_events
    ALTER COLUMN tags DROP DEFAULT,
    ALTER COLUMN tags TYPE text COLLATE "C" USING array_to_string(tags, E'\x1f'),
    ALTER COLUMN tags SET DEFAULT '',
    ALTER COLUMN posting TYPE smallint USING array_position(tags, posting);
CREATE INDEX mall_events_postings ON mall_events (split_part(tags, E'\x1f', posting), position)
    WHERE posting IS NOT NULL;

-- `mall_append` as in V26, taking each event's posting as an index into its tags.
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
    r_tokens bigint[],
    t_tags text[],
    t_first integer[],
    t_last integer[],
    e_postings smallint[]
) RETURNS TABLE (outcome text, first_position bigint, last_position bigint, version bigint)
LANGUAGE plpgsql
AS $$
DECLARE
    total integer := coalesce(array_length(e_ids, 1), 0);
    nreq integer := coalesce(array_length(r_streams, 1), 0);
    k integer := 0;
    kept integer := 0;
    n integer;
    idx integer;
    cur bigint;
    expected bigint;
    s_names text[];
    s_versions bigint[];
    s_bumped bigint[];
    -- For each event, its request; for each request: whether its lease moved on, whether it is
    -- written, its stream's version before it, the index of its first event in the e_ arrays,
    -- and what turns an event's index there into its index among the written events (and so
    -- into `positions`).
    e_req integer[];
    r_fenced boolean[] := array_fill(false, ARRAY[nreq]);
    r_ok boolean[] := array_fill(false, ARRAY[nreq]);
    r_base bigint[] := array_fill(0::bigint, ARRAY[nreq]);
    r_start integer[] := array_fill(0, ARRAY[nreq]);
    r_shift integer[] := array_fill(0, ARRAY[nreq]);
    o_outcome text[] := array_fill(NULL::text, ARRAY[nreq]);
    o_version bigint[] := array_fill(NULL::bigint, ARRAY[nreq]);
    positions bigint[];
    -- The indexes in `positions` whose position does not follow the one before.
    breaks integer[];
BEGIN
    -- An id already stored (a retry, say): nothing is written, and the caller's careful path
    -- tells a retry from a reused id. The group's first id is looked up before any position is
    -- taken (an append re-sent whole is caught so); any other stored id is caught by its unique
    -- key, and then the positions taken are filled with gap rows, so readers never wait at them.
    -- (Looking every id up first cost a tenth of the appends of batches and groups.)
    IF EXISTS (SELECT 1 FROM mall_events e WHERE e.event_id = e_ids[1]) THEN
        outcome := 'known';
        RETURN NEXT;
        RETURN;
    END IF;
    BEGIN
        -- Lock every stream of the group in one order (a new one is created), moving its version
        -- past all the group's events for it: one row version a stream. A refused request gives its
        -- events back below.
        IF nreq = 1 THEN
            INSERT INTO mall_streams AS s (stream_id, version) VALUES (r_streams[1], r_counts[1])
                ON CONFLICT (stream_id) DO UPDATE SET version = s.version + excluded.version
                RETURNING s.version INTO cur;
            s_names := r_streams;
            s_versions := ARRAY[cur - r_counts[1]];
            s_bumped := ARRAY[cur];
        ELSE
            WITH c AS (SELECT u.s, sum(u.n)::bigint AS n FROM unnest(r_streams, r_counts) AS u(s, n) GROUP BY u.s),
            locked AS (
                INSERT INTO mall_streams AS s (stream_id, version)
                SELECT c.s, c.n FROM c ORDER BY 1
                ON CONFLICT (stream_id) DO UPDATE SET version = s.version + excluded.version
                RETURNING s.stream_id, s.version)
            SELECT array_agg(l.stream_id), array_agg(l.version - c.n), array_agg(l.version)
              INTO s_names, s_versions, s_bumped
              FROM locked l JOIN c ON c.s = l.stream_id;
        END IF;
        -- The leases the requests act for, as they stand (read FOR SHARE: a takeover, which raises
        -- the token, waits for this transaction), in one statement and only when a request has one.
        IF cardinality(array_remove(r_leases, NULL)) > 0 THEN
            r_fenced := ARRAY(
                SELECT u.n IS NOT NULL AND NOT EXISTS (
                           SELECT 1 FROM mall_leases l
                            WHERE l.name = u.n AND l.token = u.t AND l.expires_at > clock_timestamp()
                              FOR SHARE)
                  FROM unnest(r_leases, r_tokens) WITH ORDINALITY AS u(n, t, o)
                 ORDER BY u.o);
        END IF;
        FOR i IN 1 .. nreq LOOP
            n := r_counts[i];
            idx := array_position(s_names, r_streams[i]);
            cur := s_versions[idx];
            expected := r_expected[i];
            r_start[i] := k + 1;
            IF r_fenced[i] THEN
                o_outcome[i] := 'fenced';
            ELSIF (expected = -2 AND cur <> 0) OR (expected >= 0 AND expected <> cur) THEN
                o_outcome[i] := 'conflict';
            ELSE
                r_ok[i] := true;
                r_base[i] := cur;
                r_shift[i] := kept - k;
                kept := kept + n;
                cur := cur + n;
                s_versions[idx] := cur;
                o_outcome[i] := 'ok';
            END IF;
            o_version[i] := cur;
            k := k + n;
        END LOOP;
        IF kept > 0 THEN
            -- Positions after the streams' locks, all at once: within a stream they rise with the
            -- versions, and a group's positions are mostly consecutive.
            IF kept = 1 THEN
                positions := ARRAY[nextval('mall_positions')];
            ELSE
                positions := ARRAY(SELECT nextval('mall_positions') FROM generate_series(1, kept));
            END IF;
            IF nreq = 1 THEN
                e_req := array_fill(1, ARRAY[total]);
            ELSE
                e_req := ARRAY(SELECT c.r FROM unnest(r_counts) WITH ORDINALITY AS c(n, r), generate_series(1, c.n) ORDER BY 1);
            END IF;
            -- A request's last event ends its stream run and holds the run's positions; its other
            -- events are not in the stream index.
            INSERT INTO mall_events (position, event_id, stream_id, stream_version, event_type, schema_version,
                                     recorded_at, tags, correlation_id, causation_id, payload, run_end, stream_run, posting)
            SELECT positions[u.o + r_shift[u.r]], u.i, r_streams[u.r], r_base[u.r] + (u.o - r_start[u.r] + 1), u.t, u.sv, p_at, u.tg,
                   u.c, u.ca, u.pl, u.o = r_start[u.r] + r_counts[u.r] - 1,
                   CASE WHEN u.o = r_start[u.r] + r_counts[u.r] - 1 AND r_counts[u.r] > 1
                        THEN positions[r_start[u.r] + r_shift[u.r] : u.o + r_shift[u.r]] END,
                   e_postings[u.o]
              FROM unnest(e_req, e_ids, e_types, e_schemas, e_tags, e_correlations, e_causations, e_payloads)
                   WITH ORDINALITY AS u(r, i, t, sv, tg, c, ca, pl, o)
             WHERE r_ok[u.r];
            -- One row a tag and run of consecutive positions (position minus its rank in the group
            -- is constant along a run), so that a tag's rows never overlap.
            IF kept = total AND t_tags IS NOT NULL AND positions[kept] - positions[1] = kept - 1 THEN
                -- Every event written at consecutive positions: the writer's runs as they are (its
                -- postings are on the events).
                INSERT INTO mall_tag_runs (tag, last_position, first_position, positions)
                SELECT u.t, positions[u.l], positions[u.f], positions[u.f:u.l]
                  FROM unnest(t_tags, t_first, t_last) AS u(t, f, l);
            ELSIF kept = total AND t_tags IS NOT NULL THEN
                -- Every event written, other groups' positions between some of them: each of the
                -- writer's runs split at the breaks inside it, a piece from each start (the run's
                -- first event, or a break) to the event before the next.
                IF cardinality(t_tags) > 0 THEN
                    breaks := ARRAY(SELECT p.o::integer FROM unnest(positions) WITH ORDINALITY AS p(p, o)
                                     WHERE p.o > 1 AND p.p <> positions[p.o - 1] + 1);
                    INSERT INTO mall_tag_runs (tag, last_position, first_position, positions)
                    SELECT u.t, positions[s.l], positions[s.f], positions[s.f:s.l]
                      FROM unnest(t_tags, t_first, t_last) AS u(t, f, l),
                           LATERAL (SELECT b.f, coalesce(lead(b.f) OVER (ORDER BY b.f) - 1, u.l) AS l
                                      FROM unnest(u.f || ARRAY(SELECT x.b FROM unnest(breaks) AS x(b)
                                                                WHERE x.b > u.f AND x.b <= u.l)) AS b(f)) AS s;
                END IF;
            ELSIF kept = total AND e_postings IS NULL AND e_tags[1] = ALL (e_tags) AND positions[kept] - positions[1] = kept - 1 THEN
                -- Every event written, with the same tags, at consecutive positions: one run a tag.
                INSERT INTO mall_tag_runs (tag, last_position, first_position, positions)
                SELECT t.tag, positions[kept], positions[1], positions
                  FROM unnest(string_to_array(e_tags[1], E'\x1f')) AS t(tag) WHERE e_tags[1] <> '';
            ELSIF total = 1 THEN
                INSERT INTO mall_tag_runs (tag, last_position, first_position, positions)
                SELECT t.tag, positions[1], positions[1], positions
                  FROM unnest(string_to_array(e_tags[1], E'\x1f')) WITH ORDINALITY AS t(tag, n)
                 WHERE e_tags[1] <> '' AND t.n IS DISTINCT FROM e_postings[1];
            ELSE
                INSERT INTO mall_tag_runs (tag, last_position, first_position, positions)
                SELECT x.tag, max(x.p), min(x.p), array_agg(x.p ORDER BY x.p)
              FROM (SELECT t.tag, positions[u.o + r_shift[u.r]] AS p, positions[u.o + r_shift[u.r]] - (u.o + r_shift[u.r]) AS run
                      FROM unnest(e_req, e_tags) WITH ORDINALITY AS u(r, tg, o),
                           unnest(string_to_array(u.tg, E'\x1f')) WITH ORDINALITY AS t(tag, n)
                     WHERE r_ok[u.r] AND u.tg <> '' AND t.n IS DISTINCT FROM e_postings[u.o]) x
                 GROUP BY x.tag, x.run;
            END IF;
        END IF;
        IF s_versions <> s_bumped THEN
            UPDATE mall_streams s SET version = v.version
              FROM unnest(s_names, s_versions, s_bumped) AS v(stream_id, version, bumped)
             WHERE s.stream_id = v.stream_id AND v.version <> v.bumped;
        END IF;
    EXCEPTION WHEN unique_violation THEN
        -- A stored event id (or a position a reader filled with a gap row first): what the
        -- block wrote is undone; its positions are not, so they are settled as gap rows here.
        IF positions IS NOT NULL THEN
            INSERT INTO mall_events (position, event_id, stream_id, stream_version, event_type, schema_version,
                                     recorded_at, payload)
            SELECT p, gen_random_uuid(), '$gap', p, '$gap', 0, p_at, '' FROM unnest(positions) AS p
            ON CONFLICT DO NOTHING;
        END IF;
        outcome := 'known';
        RETURN NEXT;
        RETURN;
    END;
    FOR i IN 1 .. nreq LOOP
        outcome := o_outcome[i];
        first_position := CASE WHEN r_ok[i] AND r_counts[i] > 0 THEN positions[r_start[i] + r_shift[i]] END;
        last_position := CASE WHEN r_ok[i] AND r_counts[i] > 0 THEN positions[r_start[i] + r_shift[i] + r_counts[i] - 1] END;
        version := o_version[i];
        RETURN NEXT;
    END LOOP;
END;
$$;

-- V25's signature (a posting as the tag itself): the same append.
CREATE OR REPLACE FUNCTION mall_append(
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
    r_tokens bigint[],
    t_tags text[],
    t_first integer[],
    t_last integer[],
    e_postings text[]
) RETURNS TABLE (outcome text, first_position bigint, last_position bigint, version bigint)
LANGUAGE sql
AS $$
    SELECT * FROM mall_append(r_streams, r_expected, r_counts, e_ids, e_types, e_schemas, e_tags, e_correlations,
                              e_causations, e_payloads, p_at, r_leases, r_tokens, t_tags, t_first, t_last,
                              CASE WHEN e_postings IS NOT NULL THEN ARRAY(
                                  SELECT array_position(string_to_array(u.tg, E'\x1f'), u.p)::smallint
                                    FROM unnest(e_tags, e_postings) WITH ORDINALITY AS u(tg, p, o) ORDER BY u.o) END)
$$;
