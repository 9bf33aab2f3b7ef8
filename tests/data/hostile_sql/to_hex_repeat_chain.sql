-- expect: bounded
-- repeat of a column per row, chained through concat
SELECT concat(repeat(media_server_ixn_guid, 1000), repeat(media_server_ixn_guid, 1000)) FROM interaction_fact
