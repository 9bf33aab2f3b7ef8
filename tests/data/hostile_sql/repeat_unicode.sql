-- expect: bounded
-- Multi-byte characters repeated
SELECT length(repeat('éééé', 500000000))
