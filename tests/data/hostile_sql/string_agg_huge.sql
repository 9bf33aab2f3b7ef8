-- expect: bounded
-- Aggregating gigabytes into one string
SELECT length(string_agg(repeat('x', 1000), ',')) FROM range(10000000)
