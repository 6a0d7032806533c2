-- Long-term schema 3: no keyword index. The search scores BM25F in the application, over the cached actor's terms
-- (longterm.keyword); the tsvector column and its GIN index served only the benchmark's keyword baseline, which
-- builds its own now (bench/ltm_baseline.py), and every insert paid for their upkeep. The index goes with the column.
ALTER TABLE ltm_records DROP COLUMN IF EXISTS words;
