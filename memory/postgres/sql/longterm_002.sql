-- Long-term schema 2: a session's tombstone also says when its records were deleted. It refuses the late records
-- of the cleared life (made within 7 days of the delete: longterm.base.cleared_since), not the records of a new
-- life of the same session id, which a session store that forgot the generation numbers from 0 again.
ALTER TABLE ltm_sessions ADD COLUMN deleted_at double precision NOT NULL DEFAULT 0;

CREATE OR REPLACE FUNCTION ltm_insert(p_tokens text[], p_actors text[], p_sessions text[], p_generations bigint[],
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
        WHERE (input.ep IS NULL OR input.ep = x.epoch)
          AND (input.g > coalesce(d.deleted_generation, -1) OR input.at > d.deleted_at + 604800)
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
