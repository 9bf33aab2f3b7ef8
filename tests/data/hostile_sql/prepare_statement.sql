-- expect: refused
-- Server-side prepared statement
PREPARE p AS SELECT 1
