-- Interactions started per 15-minute interval (UTC) and interaction type, with their average and longest duration in seconds
-- param: from:date=1970-01-01 first UTC day, inclusive
-- param: to:date=9999-12-31 last UTC day, inclusive
SELECT
    d.label AS interval_start_utc,
    f.interaction_type,
    count(*) AS interactions,
    round(avg(CAST(f.duration AS DOUBLE)), 1) AS avg_duration_secs,
    max(f.duration) AS max_duration_secs
FROM interaction_fact f
JOIN date_time d
    ON d.date_time_key = f.start_date_time_key
   AND d.day = f.day
WHERE f.day BETWEEN $from AND $to
GROUP BY d.date_time_key, d.label, f.interaction_type
ORDER BY d.date_time_key, f.interaction_type
