-- expect: refused
-- DDL
DROP TABLE interaction_fact
