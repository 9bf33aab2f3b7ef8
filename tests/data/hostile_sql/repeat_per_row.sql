-- expect: bounded
-- 100 kB strings on a hundred thousand rows
SELECT repeat('x', 100000) FROM range(100000)
