-- expect: bounded
-- Returning a billion generated rows: cut off
SELECT * FROM range(1000000000)
