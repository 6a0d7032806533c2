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
