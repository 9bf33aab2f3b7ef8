-- expect: refused
-- A catalog that is not the mart
SELECT * FROM datafusion.public.anything
