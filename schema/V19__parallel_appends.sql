-- Appends no longer wait for each other's COMMIT.
--
-- Until V18 every append locked the one `mall_log_head` row until COMMIT: positions were
-- gap-free and became visible in order, but appends from every writer on the database were one
-- queue, each paying its own commit. From V19 an append locks only the rows of the streams it
-- writes (in stream order, so groups never deadlock) and takes its positions from a sequence
-- after those locks: within a stream, versions and positions rise together; across streams,
-- transactions commit in any order, so a position may become visible before a lower one.
--
-- Readers of the global order therefore read only the settled prefix: positions up to the first
-- one not yet visible (events/src/postgres.rs). A position stays missing only while its
-- transaction is in flight or after that transaction aborted; a reader that waited long enough
-- for a missing position fills it with a gap row (stream `$gap`, never returned). The gap row's
-- INSERT waits on the position's unique key for a writer still in flight, so it is written only
-- for a position no transaction will ever commit, and a writer that took a position a gap row
-- already filled fails on that key and runs its group again. No reader ever skips a late commit.
CREATE SEQUENCE mall_positions AS bigint CACHE 1;
SELECT setval('mall_positions', greatest(h.position, 1), h.position > 0) FROM mall_log_head h;

-- A position up to which every position is settled (an event or a gap row): where readers that
-- look for the settled prefix start (raised by readers, never lowered). Up to V18's head every
-- position was gap-free.
CREATE TABLE mall_log_settled (
    id        boolean PRIMARY KEY DEFAULT true CHECK (id),
    position  bigint  NOT NULL
);
INSERT INTO mall_log_settled (id, position) SELECT true, h.position FROM mall_log_head h;
DROP TABLE mall_log_head;

DROP FUNCTION mall_append(text[], bigint[], integer[], uuid[], text[], smallint[], text[], uuid[], uuid[], bytea[],
                          timestamptz, text[], bigint[]);

-- Arguments and results as in V18 (one row a request: 'ok', 'conflict', 'fenced'; or one row
-- 'known' when an event id is already stored, and then nothing is written). The events of one
-- request take increasing positions, not always consecutive ones: other groups take positions
-- between them. Listeners are notified by the writer after COMMIT (a NOTIFY inside the
-- transaction would serialize every commit on the notification queue's lock).
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
-- Lookups by key (as in V18), planned once per connection: a custom plan at every call for
-- each statement cost a lone writer a sixth of its appends.
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    total integer := coalesce(array_length(e_ids, 1), 0);
    nreq integer := coalesce(array_length(r_streams, 1), 0);
    k integer := 0;
    n integer;
    idx integer;
    cur bigint;
    expected bigint;
    written boolean := false;
    s_names text[];
    s_versions bigint[];
    p_positions bigint[];
    p_streams text[];
    p_versions bigint[];
    o_outcome text[];
    o_first bigint[];
    o_last bigint[];
    o_version bigint[];
BEGIN
    IF EXISTS (SELECT 1 FROM mall_events e WHERE e.event_id = ANY (e_ids)) THEN
        outcome := 'known';
        RETURN NEXT;
        RETURN;
    END IF;
    -- Lock every stream of the group (a new one is created at version 0), in one order.
    WITH locked AS (
        INSERT INTO mall_streams AS s (stream_id, version)
        SELECT DISTINCT u.s, 0 FROM unnest(r_streams) AS u(s) ORDER BY 1
        ON CONFLICT (stream_id) DO UPDATE SET version = s.version
        RETURNING s.stream_id, s.version)
    SELECT array_agg(l.stream_id), array_agg(l.version) INTO s_names, s_versions FROM locked l;
    p_positions := array_fill(NULL::bigint, ARRAY[total]);
    p_streams := array_fill(NULL::text, ARRAY[total]);
    p_versions := array_fill(NULL::bigint, ARRAY[total]);
    o_outcome := array_fill(NULL::text, ARRAY[nreq]);
    o_first := array_fill(NULL::bigint, ARRAY[nreq]);
    o_last := array_fill(NULL::bigint, ARRAY[nreq]);
    o_version := array_fill(NULL::bigint, ARRAY[nreq]);
    FOR i IN 1 .. nreq LOOP
        n := r_counts[i];
        idx := array_position(s_names, r_streams[i]);
        cur := s_versions[idx];
        expected := r_expected[i];
        IF r_leases[i] IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM mall_leases l
             WHERE l.name = r_leases[i] AND l.token = r_tokens[i] AND l.expires_at > clock_timestamp()
               FOR SHARE) THEN
            o_outcome[i] := 'fenced';
        ELSIF (expected = -2 AND cur <> 0) OR (expected >= 0 AND expected <> cur) THEN
            o_outcome[i] := 'conflict';
        ELSE
            FOR j IN 1 .. n LOOP
                p_positions[k + j] := nextval('mall_positions');
                p_streams[k + j] := r_streams[i];
                p_versions[k + j] := cur + j;
            END LOOP;
            IF n > 0 THEN
                o_first[i] := p_positions[k + 1];
                o_last[i] := p_positions[k + n];
                written := true;
            END IF;
            cur := cur + n;
            s_versions[idx] := cur;
            o_outcome[i] := 'ok';
        END IF;
        o_version[i] := cur;
        k := k + n;
    END LOOP;
    IF written THEN
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
        UPDATE mall_streams s SET version = v.version
          FROM unnest(s_names, s_versions) AS v(stream_id, version)
         WHERE s.stream_id = v.stream_id AND s.version <> v.version;
    END IF;
    FOR i IN 1 .. nreq LOOP
        outcome := o_outcome[i];
        first_position := o_first[i];
        last_position := o_last[i];
        version := o_version[i];
        RETURN NEXT;
    END LOOP;
END;
$$;
