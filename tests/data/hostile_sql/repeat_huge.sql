-- expect: bounded
-- One 2 GB string
SELECT repeat('x', 2000000000)
