-- expect: bounded
-- Padding every row of a column to 10 MB
SELECT rpad(media_server_ixn_guid, 10000000, '#') FROM interaction_fact
