-- Service level, abandon rate and average speed of answer per queue and hour (from the AG2_QUEUE_HOUR aggregate)
-- param: from:date=1970-01-01 first UTC day, inclusive
-- param: to:date=9999-12-31 last UTC day, inclusive
-- param: queue:text=% queue name or LIKE pattern
SELECT
    r.resource_name AS queue,
    to_timestamp(a.date_time_key) AS hour_utc,
    a.offered,
    a.accepted,
    a.abandoned,
    ROUND(100.0 * a.accepted_within_sl / NULLIF(a.offered - a.abandoned_short, 0), 1) AS service_level_pct,
    ROUND(100.0 * a.abandoned / NULLIF(a.offered, 0), 1) AS abandon_pct,
    ROUND(CAST(a.accepted_wait_secs AS DOUBLE) / NULLIF(a.accepted, 0), 1) AS asa_secs
FROM ag2_queue_hour a
LEFT JOIN resource_ r ON a.resource_key = r.resource_key
WHERE a.day BETWEEN $from AND $to
  AND coalesce(r.resource_name, '') LIKE $queue
ORDER BY hour_utc, queue
