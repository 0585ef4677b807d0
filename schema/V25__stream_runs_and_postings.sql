-- Fewer index entries an event: a stream's index holds one entry a run, and a tag's lone postings
-- sit on the event rows.
--
-- Until V24 every event had an entry in the unique index on (stream, version): a batch of 100
-- events to one stream wrote 100 entries at a random place in that index (each stream's own
-- range), a tenth of the WAL of a batch and of the time eight writers spent on it. From V25 the
-- index holds only the last event of each run — the events one request appended to one stream,
-- at consecutive versions — and that event holds the run's positions (`stream_run`, NULL for a
-- run of one, whose position is its own). A stream is read like a tag (V20): the first runs that
-- reach a version, their positions, those events. Every other writer (a lone event, the careful
-- path, a gap row, an older node) writes runs of one, as `run_end` defaults to true, so their
-- rows are indexed as before; rows already stored are runs of one without being rewritten.
-- Versions stay unique: every append takes them under its stream's row lock in `mall_streams`,
-- and the index is unique on the runs' last versions.
ALTER TABLE mall_events ADD COLUMN run_end boolean NOT NULL DEFAULT true, ADD COLUMN stream_run bigint[];
CREATE UNIQUE INDEX mall_events_stream_runs ON mall_events (stream_id, stream_version) WHERE run_end;
ALTER TABLE mall_events DROP CONSTRAINT mall_events_stream_id_stream_version_key;

-- Until V24 every tag of an event that no neighbour in its group shared — a shopper's tag on a
-- signal, nearly every event — was a `mall_tag_runs` row of one position: a heap row and an
-- index entry, about a sixth of a batch's WAL. From V25 one such tag an event, its posting, is
-- kept on the event row itself (`posting`) and indexed there with its position; the other tags
-- and every run of two or more stay in `mall_tag_runs`. A tag is read from both: its first runs
-- and its first postings from a position, merged (events/src/postgres.rs, `read_by_tag`). The
-- writer chooses the postings (`e_postings`, one tag or NULL an event) with its runs; a lone
-- event's first tag is its posting. Callers of the older signatures write no postings, and their
-- runs are as before; nodes older than V25 do not read postings (upgrade the nodes of one database
-- together across V25).
ALTER TABLE mall_events ADD COLUMN posting text COLLATE "C";
CREATE INDEX mall_events_postings ON mall_events (posting, position) WHERE posting IS NOT NULL;

-- `mall_append` as in V24, with a new argument for the events' postings, each request's events
-- written as one stream run.
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

-- V24's signature: no postings.
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
    t_last integer[]
) RETURNS TABLE (outcome text, first_position bigint, last_position bigint, version bigint)
LANGUAGE sql
AS $$
    SELECT * FROM mall_append(r_streams, r_expected, r_counts, e_ids, e_types, e_schemas, e_tags, e_correlations,
                              e_causations, e_payloads, p_at, r_leases, r_tokens, t_tags, t_first, t_last,
                              NULL::text[])
$$;
