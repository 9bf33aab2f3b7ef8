-- expect: bounded
-- One list of timestamps every second for a century
SELECT generate_series(TIMESTAMP '1970-01-01 00:00:00', TIMESTAMP '2070-01-01 00:00:00', INTERVAL '1 second')
