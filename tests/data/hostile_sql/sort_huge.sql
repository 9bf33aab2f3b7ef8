-- expect: bounded
-- Sorting a hundred million random values
SELECT value FROM range(100000000) ORDER BY random()
