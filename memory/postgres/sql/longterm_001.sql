-- Long-term records, version 1: one row per message record, stored on the request path with its text (its
-- embedding, a pgvector column, NULL until the background writer adds it); per actor its epoch (forget),
-- version (the search cache's clock) and record counter; per actor the clock of vectors added; per deleted
-- session the highest generation deleted (a tombstone that refuses late writes).
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE ltm_records (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- the public record id: 128 random bits, hex (says nothing about anyone's other records)
    token text NOT NULL UNIQUE,
    actor_id text NOT NULL,
    session_id text NOT NULL,
    generation bigint NOT NULL,
    turn integer NOT NULL,
    seq integer NOT NULL,
    role text NOT NULL,
    speaker text NOT NULL,
    body text NOT NULL,
    caption text NOT NULL,
    created_at double precision NOT NULL,
    -- MiniLM-L6 (longterm.embedding), unit length: cosine similarity is the dot product. NULL: not yet
    embedding vector(384),
    -- the actor's own numbering of its records (1, 2, ...): the list_records cursor
    actor_seq bigint NOT NULL,
    -- when its vector was added, by the actor's ltm_embedded clock: a cached actor reads only the new ones
    vector_seq bigint NOT NULL DEFAULT 0,
    -- the keyword baseline's words (the hybrid search scores BM25F in the app, over the cached terms)
    words tsvector GENERATED ALWAYS AS (to_tsvector('english', body || ' ' || caption)) STORED,
    -- a record written twice (a retried write) is stored once; a session id reused in a new generation
    -- (after expiry) stores its new turns
    UNIQUE (actor_id, session_id, generation, turn, seq)
);

-- one actor's records in id order: the search cache's load, and its incremental reads (id > last seen)
CREATE INDEX ltm_records_actor ON ltm_records (actor_id, id);
-- list_records, newest first
CREATE INDEX ltm_records_actor_seq ON ltm_records (actor_id, actor_seq);
-- the vectors added to records a cached actor already holds
CREATE INDEX ltm_records_vector_seq ON ltm_records (actor_id, vector_seq) WHERE vector_seq > 0;
-- the records still waiting for a vector: the background writer's (and a restart's) work list
CREATE INDEX ltm_records_unembedded ON ltm_records (id) WHERE embedding IS NULL;
CREATE INDEX ltm_records_words ON ltm_records USING gin (words);

-- locked by every write and delete of the actor's records (FOR UPDATE): the epoch and tombstone checks and
-- the inserts see the same state
CREATE TABLE ltm_actors (
    actor_id text PRIMARY KEY,
    epoch bigint NOT NULL DEFAULT 0,
    version bigint NOT NULL DEFAULT 0,
    deletes bigint NOT NULL DEFAULT 0,
    -- actor_seq of the actor's newest record
    records bigint NOT NULL DEFAULT 0
);

-- the vectors added to an actor's records (vector_seq of the newest), apart from ltm_actors: the background
-- writer locks this row, never the one the request path's inserts wait for
CREATE TABLE ltm_embedded (
    actor_id text PRIMARY KEY,
    embedded bigint NOT NULL DEFAULT 0
);

CREATE TABLE ltm_sessions (
    actor_id text NOT NULL,
    session_id text NOT NULL,
    deleted_generation bigint NOT NULL,
    PRIMARY KEY (actor_id, session_id)
);

-- Store records on the request path, in one round trip: per record stored its token (a record refused, because
-- its actor was forgotten or its session cleared since the request started, or stored already, is missing).
-- The first statement locks the actors' rows (in actor order: two inserts never deadlock); the second, with a
-- snapshot taken after the locks, checks the epochs and tombstones, inserts, and moves the actors' clocks on.
CREATE FUNCTION ltm_insert(p_tokens text[], p_actors text[], p_sessions text[], p_generations bigint[],
                           p_turns integer[], p_seqs integer[], p_roles text[], p_speakers text[], p_bodies text[],
                           p_captions text[], p_created double precision[], p_vectors text[], p_epochs bigint[])
RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ltm_actors AS x (actor_id) SELECT DISTINCT a FROM unnest(p_actors) AS a ORDER BY 1
    ON CONFLICT (actor_id) DO UPDATE SET actor_id = x.actor_id;
    RETURN QUERY
    WITH input AS (
        SELECT * FROM unnest(p_tokens, p_actors, p_sessions, p_generations, p_turns, p_seqs, p_roles, p_speakers,
                             p_bodies, p_captions, p_created, p_vectors, p_epochs)
            WITH ORDINALITY AS u (k, a, s, g, t, q, r, sp, b, c, at, e, ep, i)
    ), kept AS (
        SELECT input.*, x.records + row_number() OVER (PARTITION BY input.a ORDER BY input.i) AS n
        FROM input JOIN ltm_actors x ON x.actor_id = input.a
        LEFT JOIN ltm_sessions d ON d.actor_id = input.a AND d.session_id = input.s
        WHERE (input.ep IS NULL OR input.ep = x.epoch) AND input.g > coalesce(d.deleted_generation, -1)
    ), stored AS (
        INSERT INTO ltm_records (token, actor_id, session_id, generation, turn, seq, role, speaker, body, caption,
                                 created_at, embedding, actor_seq)
        SELECT k, a, s, g, t, q, r, sp, b, c, at, e::vector, n FROM kept ORDER BY a, i
        ON CONFLICT (actor_id, session_id, generation, turn, seq) DO NOTHING
        RETURNING ltm_records.token, ltm_records.actor_id, ltm_records.actor_seq
    ), moved AS (
        UPDATE ltm_actors x SET version = x.version + 1, records = m.top
        FROM (SELECT actor_id, max(actor_seq) AS top FROM stored GROUP BY actor_id) AS m
        WHERE x.actor_id = m.actor_id RETURNING 1
    )
    SELECT stored.token FROM stored;
END $$;
