-- expect: bounded
-- A list of a billion elements
SELECT array_repeat(1, 1000000000)
