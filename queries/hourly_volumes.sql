-- Interactions per local hour of day (the configured time zone) and day: how many started, how many an agent answered, and how many were abandoned in a queue
-- param: from:date=1970-01-01 first UTC day, inclusive
-- param: to:date=9999-12-31 last UTC day, inclusive
WITH answered AS (
    SELECT DISTINCT interaction_id
    FROM interaction_resource_fact
    WHERE resource_role = 'Received' AND talk_count > 0
),
abandoned AS (
    SELECT DISTINCT interaction_id
    FROM mediation_segment_fact
    WHERE abandoned = 1
)
SELECT
    d.local_date,
    d.local_hour,
    count(*) AS interactions,
    count(ans.interaction_id) AS answered,
    count(ab.interaction_id) AS abandoned_in_queue
FROM interaction_fact f
JOIN date_time d
    ON d.date_time_key = f.start_date_time_key
   AND d.day = f.day
LEFT JOIN answered ans ON ans.interaction_id = f.interaction_id
LEFT JOIN abandoned ab ON ab.interaction_id = f.interaction_id
WHERE f.day BETWEEN $from AND $to
GROUP BY d.local_date, d.local_hour
ORDER BY d.local_date, d.local_hour
