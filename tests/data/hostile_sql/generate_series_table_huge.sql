-- expect: bounded
-- A hundred billion generated rows
SELECT count(*) FROM generate_series(1, 100000000000)
