-- Long-term records, version 1: one row per message record, its embedding in a pgvector column and its
-- words in a tsvector; per actor its epoch (forget) and version (the search cache's clock); per deleted
-- session the highest generation deleted (a tombstone that refuses late writes).
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE ltm_records (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
    -- MiniLM-L6 (longterm.embedding), unit length: cosine similarity is the dot product
    embedding vector(384) NOT NULL,
    -- the keyword baseline's words (the hybrid search scores BM25F in the app, over the cached terms)
    words tsvector GENERATED ALWAYS AS (to_tsvector('english', body || ' ' || caption)) STORED,
    -- a record written twice (a retried batch) is stored once
    UNIQUE (actor_id, session_id, generation, turn, seq)
);

-- one actor's records in id order: the search cache's load, and its incremental reads (id > last seen)
CREATE INDEX ltm_records_actor ON ltm_records (actor_id, id);
CREATE INDEX ltm_records_words ON ltm_records USING gin (words);

CREATE TABLE ltm_actors (
    actor_id text PRIMARY KEY,
    epoch bigint NOT NULL DEFAULT 0,
    version bigint NOT NULL DEFAULT 0,
    deletes bigint NOT NULL DEFAULT 0
);

CREATE TABLE ltm_sessions (
    actor_id text NOT NULL,
    session_id text NOT NULL,
    deleted_generation bigint NOT NULL,
    PRIMARY KEY (actor_id, session_id)
);
