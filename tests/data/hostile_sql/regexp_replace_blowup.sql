-- expect: bounded
-- Empty pattern: a replacement at every position
SELECT length(regexp_replace(repeat('a', 100000), '', repeat('b', 10000), 'g'))
