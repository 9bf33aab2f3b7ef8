-- expect: bounded
-- A 1 MB constant (after folding) repeated on every row of every batch
SELECT repeat('x', 1000000) FROM range(1000000)
