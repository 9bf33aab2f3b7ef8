-- expect: bounded
-- One list value of ten billion elements
SELECT range(1, 10000000000)
