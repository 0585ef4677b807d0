-- A group whose positions another group's interleave keeps the writer's runs, split where its
-- positions jump.
--
-- Positions come from `mall_positions` one `nextval` at a time, so two groups appended at once
-- (eight writing processes, say) can take positions between each other's: in two runs of the
-- benchmark of batches of 100 from eight stores, about half the groups and 3% of them. Until V25
-- such a group fell back to grouping its tags' runs itself (splitting every event's tags, a sort
-- and an aggregate over every pair). From V26 it keeps the writer's runs and splits each only
-- where the group's positions jump (`breaks`, the indexes of the events whose position does not
-- follow the one before): the same rows, without touching each event's tags. The tag runs of a
-- batch of 100 with one jump took 387-420 us grouped, 67-85 us split so (a `DO` block at the
-- database). The function's signature and results are V25's.

-- `mall_append` as in V25 but for the branch that writes the writer's runs.
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
    -- The tags of every event, when all events of the group have the same ones (a batch, say).
    same_tags text[];
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
    IF e_tags[1] = ALL (e_tags) THEN
        same_tags := CASE WHEN e_tags[1] = '' THEN '{}'::text[] ELSE string_to_array(e_tags[1], E'\x1f') END;
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
            SELECT positions[u.o + r_shift[u.r]], u.i, r_streams[u.r], r_base[u.r] + (u.o - r_start[u.r] + 1), u.t, u.sv, p_at,
                   coalesce(same_tags, CASE WHEN u.tg = '' THEN '{}'::text[] ELSE string_to_array(u.tg, E'\x1f') END),
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
            ELSIF kept = total AND same_tags IS NOT NULL AND e_postings IS NULL AND positions[kept] - positions[1] = kept - 1 THEN
                -- Every event written, with the same tags, at consecutive positions: one run a tag.
                INSERT INTO mall_tag_runs (tag, last_position, first_position, positions)
                SELECT t.tag, positions[kept], positions[1], positions FROM unnest(same_tags) AS t(tag);
            ELSIF total = 1 THEN
                INSERT INTO mall_tag_runs (tag, last_position, first_position, positions)
                SELECT t.tag, positions[1], positions[1], positions
                  FROM unnest(string_to_array(e_tags[1], E'\x1f')) AS t(tag)
                 WHERE e_tags[1] <> '' AND t.tag IS DISTINCT FROM e_postings[1];
            ELSE
                INSERT INTO mall_tag_runs (tag, last_position, first_position, positions)
                SELECT x.tag, max(x.p), min(x.p), array_agg(x.p ORDER BY x.p)
              FROM (SELECT t.tag, positions[u.o + r_shift[u.r]] AS p, positions[u.o + r_shift[u.r]] - (u.o + r_shift[u.r]) AS run
                      FROM unnest(e_req, e_tags) WITH ORDINALITY AS u(r, tg, o),
                           unnest(string_to_array(u.tg, E'\x1f')) AS t(tag)
                     WHERE r_ok[u.r] AND u.tg <> '' AND t.tag IS DISTINCT FROM e_postings[u.o]) x
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
