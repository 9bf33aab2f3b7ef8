-- expect: bounded
-- array_resize to two billion elements
SELECT array_resize([1], 2000000000)
