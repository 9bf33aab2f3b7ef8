-- expect: refused
-- DML
INSERT INTO interaction_fact (media_server_ixn_guid) VALUES ('x')
