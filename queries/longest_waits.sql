-- The 50 longest waits in an ACD queue: interaction, caller, queue, when it entered the queue (UTC), wait in seconds and how the wait ended
SELECT
    f.media_server_ixn_guid AS callid,
    i.source_address AS caller,
    coalesce(r.resource_name, CAST(f.resource_key AS VARCHAR)) AS queue,
    to_timestamp(f.start_ts) AS entered_queue_utc,
    f.mediation_duration AS wait_secs,
    f.technical_result AS outcome
FROM interaction_resource_fact f
JOIN interaction_fact i
    ON i.interaction_id = f.interaction_id
   AND i.day = f.day
LEFT JOIN resource_ r ON r.resource_key = f.resource_key
WHERE f.resource_role = 'Queue'
ORDER BY f.mediation_duration DESC, f.start_ts, f.interaction_resource_id
LIMIT 50
