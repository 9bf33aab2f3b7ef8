-- expect: bounded
-- array_repeat of a list that is itself large (the estimate must see the element size)
SELECT array_repeat(array_repeat(1, 100000), 10000)
