-- expect: bounded
-- Every character replaced by a 1000-character string
SELECT length(replace(repeat('a', 1000000), 'a', repeat('b', 1000)))
