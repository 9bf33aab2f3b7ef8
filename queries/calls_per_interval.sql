-- Interactions started per 15-minute interval (UTC) and interaction type, with their average and longest duration in seconds
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
GROUP BY d.date_time_key, d.label, f.interaction_type
ORDER BY d.date_time_key, f.interaction_type
