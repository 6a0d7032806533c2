-- Session store, version 1: one row per (actor_id, session_id) with its counters, one row per message.
-- Times are epoch seconds (double precision) given by the application, as in every other backend.

-- A deleted session keeps its row as a tombstone (counters reset, generation + 1), so a turn or a summary
-- begun before the delete is refused in the same transaction that would have written it.
CREATE TABLE memory_sessions (
    pk bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor_id text NOT NULL,
    session_id text NOT NULL,
    generation bigint NOT NULL DEFAULT 0,
    turns integer NOT NULL DEFAULT 0,
    user_messages integer NOT NULL DEFAULT 0,
    messages integer NOT NULL DEFAULT 0,
    events integer NOT NULL DEFAULT 0,
    -- the SESSION_TTL clock: the last write, or the last load_window of a turn in progress
    updated_at double precision NOT NULL,
    -- the turns holding the session (their load_window, not yet their add_turns), so a turn's write ends
    -- only its own hold (memory.expiry); hold_until: when the newest hold ends, on the TTL clock of
    -- updated_at (the hold's end minus SESSION_TTL), so a hold has passed once hold_until < p_cutoff
    -- (now - SESSION_TTL, from the application like every time here)
    holds integer NOT NULL DEFAULT 0,
    hold_until double precision,
    -- the last add_turns; NULL while the session holds no turns (the listing order)
    written_at double precision,
    summary_text text,
    summary_through integer,
    UNIQUE (actor_id, session_id)
);

-- list_sessions: one range of this index, read backwards; other actors' sessions cost nothing
CREATE INDEX memory_sessions_actor_written ON memory_sessions (actor_id, written_at, session_id)
    WHERE written_at IS NOT NULL;

-- The last k turns are one range of the primary key, however long the session is.
CREATE TABLE memory_messages (
    session_pk bigint NOT NULL REFERENCES memory_sessions (pk) ON DELETE CASCADE,
    turn integer NOT NULL,
    seq integer NOT NULL,
    event_no integer NOT NULL,
    created_at double precision NOT NULL,
    role text NOT NULL,
    body text NOT NULL,
    PRIMARY KEY (session_pk, turn, seq)
);

-- Idempotency keys, written in the turn's transaction.
CREATE TABLE memory_requests (
    session_pk bigint NOT NULL REFERENCES memory_sessions (pk) ON DELETE CASCADE,
    key text NOT NULL,
    stored_at double precision NOT NULL,
    message_count integer NOT NULL,
    event_no integer NOT NULL,
    first_turn integer NOT NULL,
    last_turn integer NOT NULL,
    PRIMARY KEY (session_pk, key)
);

-- add_turns in one round trip. Outcome 'stored' (message_count: the session's USER messages after it),
-- 'changed' (the generation moved on: nothing stored) or 'duplicate' (the idempotency key is recorded:
-- nothing stored; one row per message of the original turn, role and body, with its message_count).
-- The session row is locked first (SELECT ... FOR UPDATE): concurrent writers on one session queue on it,
-- so their counts are distinct and gap-free, on any number of replicas.
CREATE FUNCTION memory_add_turns(p_actor text, p_session text, p_roles text[], p_bodies text[],
                                 p_generation bigint, p_key text, p_now double precision,
                                 p_cutoff double precision, p_since double precision)
RETURNS TABLE (outcome text, message_count integer, role text, body text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    s memory_sessions%ROWTYPE;
    r memory_requests%ROWTYPE;
    expired boolean;
    turn_of integer[] := '{}';
    first_turn integer;
    i integer;
    held integer;
BEGIN
    SELECT * INTO s FROM memory_sessions WHERE actor_id = p_actor AND session_id = p_session FOR UPDATE;
    IF NOT FOUND THEN
        IF p_generation IS NOT NULL AND p_generation <> 0 THEN
            RETURN QUERY SELECT 'changed'::text, 0, NULL::text, NULL::text;
            RETURN;
        END IF;
        INSERT INTO memory_sessions (actor_id, session_id, updated_at) VALUES (p_actor, p_session, p_now)
            ON CONFLICT (actor_id, session_id) DO NOTHING;
        SELECT * INTO s FROM memory_sessions WHERE actor_id = p_actor AND session_id = p_session FOR UPDATE;
    END IF;
    expired := s.updated_at < p_cutoff;
    IF expired AND s.messages > 0 THEN
        s.generation := s.generation + 1;  -- an expired life that held turns: the next one is a new generation
    END IF;
    IF p_generation IS NOT NULL AND s.generation <> p_generation THEN
        RETURN QUERY SELECT 'changed'::text, 0, NULL::text, NULL::text;
        RETURN;
    END IF;
    IF expired THEN  -- it starts again at 1
        DELETE FROM memory_messages WHERE session_pk = s.pk;
        DELETE FROM memory_requests WHERE session_pk = s.pk;
        s.turns := 0; s.user_messages := 0; s.messages := 0; s.events := 0;
        s.summary_text := NULL; s.summary_through := NULL;
    END IF;
    IF p_key IS NOT NULL THEN
        SELECT * INTO r FROM memory_requests WHERE session_pk = s.pk AND key = p_key AND stored_at >= p_since;
        IF FOUND THEN
            RETURN QUERY SELECT 'duplicate'::text, r.message_count, m.role, m.body FROM memory_messages m
                WHERE m.session_pk = s.pk AND m.turn BETWEEN r.first_turn AND r.last_turn
                  AND m.event_no = r.event_no ORDER BY m.turn, m.seq;
            IF NOT FOUND THEN
                RETURN QUERY SELECT 'duplicate'::text, r.message_count, NULL::text, NULL::text;
            END IF;
            RETURN;
        END IF;
    END IF;
    s.events := s.events + 1;
    FOR i IN 1 .. cardinality(p_roles) LOOP
        IF p_roles[i] = 'USER' THEN
            s.user_messages := s.user_messages + 1;
            s.turns := s.turns + 1;
        ELSIF s.turns = 0 THEN
            s.turns := 1;  -- messages before the first USER message form turn 1 (numbered 0)
        END IF;
        first_turn := coalesce(first_turn, s.turns);
        turn_of[i] := s.turns;
    END LOOP;
    INSERT INTO memory_messages (session_pk, turn, seq, event_no, created_at, role, body)
        SELECT s.pk, turn_of[u.n], s.messages + u.n, s.events, p_now, u.role, u.body
        FROM unnest(p_roles, p_bodies) WITH ORDINALITY AS u (role, body, n);
    s.messages := s.messages + cardinality(p_roles);
    -- this turn's hold ends (memory.expiry). The turns still holding the session (none once the newest hold
    -- has passed: a turn that failed without writing holds no longer than that): the last one's write leaves
    -- the session SESSION_TTL from now, even when its hold (max(SESSION_TTL, turn_grace)) ran longer; while
    -- other turns hold it, expiry only moves later (a write never cuts short their hold).
    held := CASE WHEN s.hold_until >= p_cutoff THEN s.holds ELSE 0 END;
    UPDATE memory_sessions SET turns = s.turns, user_messages = s.user_messages, messages = s.messages,
        events = s.events, written_at = p_now,
        updated_at = CASE WHEN held > 1 THEN greatest(updated_at, p_now) ELSE p_now END,
        holds = greatest(held - 1, 0), hold_until = CASE WHEN held > 1 THEN hold_until END,
        generation = s.generation, summary_text = s.summary_text, summary_through = s.summary_through
        WHERE pk = s.pk;
    IF p_key IS NOT NULL THEN
        DELETE FROM memory_requests WHERE session_pk = s.pk AND stored_at < p_since;
        INSERT INTO memory_requests (session_pk, key, stored_at, message_count, event_no, first_turn, last_turn)
            VALUES (s.pk, p_key, p_now, s.user_messages, s.events, first_turn, s.turns)
            ON CONFLICT (session_pk, key) DO UPDATE SET stored_at = excluded.stored_at,
                message_count = excluded.message_count, event_no = excluded.event_no,
                first_turn = excluded.first_turn, last_turn = excluded.last_turn;
    END IF;
    RETURN QUERY SELECT 'stored'::text, s.user_messages, NULL::text, NULL::text;
END
$$;

-- load_window in one round trip: a header row (turn -1: generation, liveness, USER-message count and the
-- rolling summary), then the last k turns' messages by primary key. An expired life that held turns reports
-- the next generation (the one its next write starts). p_hold (SESSION_TTL set): the turn's hold, the
-- session's TTL clock moved to it (never back) and one more turn counted as holding it, in the same statement.
CREATE FUNCTION memory_load_window(p_actor text, p_session text, p_k integer, p_cutoff double precision,
                                   p_hold double precision)
RETURNS TABLE (turn integer, role text, body text, generation bigint, live boolean, message_count integer,
               summary_through integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    s memory_sessions%ROWTYPE;
    is_live boolean;
BEGIN
    IF p_hold IS NOT NULL THEN
        UPDATE memory_sessions SET updated_at = greatest(updated_at, p_hold),
            holds = CASE WHEN hold_until >= p_cutoff THEN holds ELSE 0 END + 1, hold_until = p_hold
            WHERE actor_id = p_actor AND session_id = p_session AND updated_at >= p_cutoff AND messages > 0
            RETURNING * INTO s;
    END IF;
    IF s.pk IS NULL THEN
        SELECT * INTO s FROM memory_sessions WHERE actor_id = p_actor AND session_id = p_session;
        IF NOT FOUND THEN
            RETURN;
        END IF;
    END IF;
    is_live := s.updated_at >= p_cutoff;
    RETURN QUERY SELECT -1, NULL::text, s.summary_text,
        s.generation + CASE WHEN NOT is_live AND s.messages > 0 THEN 1 ELSE 0 END, is_live, s.user_messages,
        s.summary_through;
    IF is_live THEN
        RETURN QUERY SELECT m.turn, m.role, m.body, NULL::bigint, NULL::boolean, NULL::integer, NULL::integer
            FROM memory_messages m WHERE m.session_pk = s.pk AND m.turn > s.turns - p_k ORDER BY m.turn, m.seq;
    END IF;
END
$$;

-- delete_session: empty the session, keep its row as a tombstone with the generation moved on; returns the
-- events removed (0 for a session that had expired, or was never written).
CREATE FUNCTION memory_delete_session(p_actor text, p_session text, p_now double precision,
                                      p_cutoff double precision)
RETURNS integer
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    s memory_sessions%ROWTYPE;
BEGIN
    SELECT * INTO s FROM memory_sessions WHERE actor_id = p_actor AND session_id = p_session FOR UPDATE;
    IF NOT FOUND THEN  -- never written: the tombstone still records the delete
        INSERT INTO memory_sessions (actor_id, session_id, updated_at, generation)
            VALUES (p_actor, p_session, p_now, 1)
            ON CONFLICT (actor_id, session_id) DO UPDATE SET generation = memory_sessions.generation + 1,
                updated_at = p_now;
        RETURN 0;
    END IF;
    DELETE FROM memory_messages WHERE session_pk = s.pk;
    DELETE FROM memory_requests WHERE session_pk = s.pk;
    UPDATE memory_sessions SET turns = 0, user_messages = 0, messages = 0, events = 0, written_at = NULL,
        summary_text = NULL, summary_through = NULL, updated_at = p_now, holds = 0, hold_until = NULL,
        -- past the generation an expired life (which held turns) reported, too
        generation = generation + 1 + CASE WHEN s.updated_at < p_cutoff AND s.messages > 0 THEN 1 ELSE 0 END
        WHERE pk = s.pk;
    RETURN CASE WHEN s.updated_at >= p_cutoff THEN s.events ELSE 0 END;
END
$$;

-- put_summary: false (nothing written) when the generation moved on, or the session no longer holds the
-- turns the summary covers, or it expired.
CREATE FUNCTION memory_put_summary(p_actor text, p_session text, p_text text, p_through integer,
                                   p_generation bigint, p_now double precision, p_cutoff double precision)
RETURNS boolean
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    s memory_sessions%ROWTYPE;
BEGIN
    SELECT * INTO s FROM memory_sessions WHERE actor_id = p_actor AND session_id = p_session FOR UPDATE;
    IF p_generation IS NOT NULL AND (coalesce(s.generation
            + CASE WHEN s.updated_at < p_cutoff AND s.messages > 0 THEN 1 ELSE 0 END, 0) <> p_generation
            OR (CASE WHEN FOUND AND s.updated_at >= p_cutoff THEN s.user_messages ELSE 0 END) < p_through) THEN
        RETURN false;  -- cleared since (or the turns it summarises are gone)
    END IF;
    IF NOT FOUND THEN  -- a row without messages: no count, not listed
        INSERT INTO memory_sessions (actor_id, session_id, updated_at, summary_text, summary_through)
            VALUES (p_actor, p_session, p_now, p_text, p_through)
            ON CONFLICT (actor_id, session_id) DO NOTHING;
        RETURN FOUND;
    END IF;
    IF s.updated_at < p_cutoff THEN
        RETURN false;  -- expired: its summary must not reach the session that starts next
    END IF;
    UPDATE memory_sessions SET summary_text = p_text, summary_through = p_through WHERE pk = s.pk;
    RETURN true;
END
$$;

-- purge_expired (at start-up with SESSION_TTL): a session that held turns stays as a tombstone, its
-- generation moved on, until p_tombstone_cutoff, as a deleted one does; a row that never held a turn nor was
-- deleted goes. Returns how many sessions with turns were purged.
CREATE FUNCTION memory_purge_expired(p_cutoff double precision, p_tombstone_cutoff double precision)
RETURNS integer
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    purged integer;
BEGIN
    SELECT count(*) INTO purged FROM memory_sessions WHERE updated_at < p_cutoff AND messages > 0;
    DELETE FROM memory_sessions
        WHERE updated_at < p_cutoff AND (updated_at < p_tombstone_cutoff OR (generation = 0 AND messages = 0));
    DELETE FROM memory_messages m USING memory_sessions s
        WHERE m.session_pk = s.pk AND s.updated_at < p_cutoff;
    DELETE FROM memory_requests r USING memory_sessions s
        WHERE r.session_pk = s.pk AND s.updated_at < p_cutoff;
    UPDATE memory_sessions SET turns = 0, user_messages = 0, messages = 0, events = 0, written_at = NULL,
        summary_text = NULL, summary_through = NULL, generation = generation + 1,
        holds = 0, hold_until = NULL
        WHERE updated_at < p_cutoff AND messages > 0;
    RETURN purged;
END
$$;
