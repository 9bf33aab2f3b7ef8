-- expect: bounded
-- Cross join returning every row: cut off at max_rows / max_result_mb
SELECT a.*, b.* FROM interaction_fact a CROSS JOIN interaction_fact b
