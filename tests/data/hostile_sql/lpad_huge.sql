-- expect: bounded
-- Padding to a billion characters
SELECT lpad('x', 1000000000, 'y')
