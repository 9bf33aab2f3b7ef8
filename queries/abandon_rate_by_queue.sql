-- Abandon rate per ACD queue: queue visits offered, abandoned while waiting, distributed to an agent, average and longest wait in seconds
-- param: from:date=1970-01-01 first UTC day, inclusive
-- param: to:date=9999-12-31 last UTC day, inclusive
-- param: queue:text=% queue name or LIKE pattern
SELECT
    coalesce(r.resource_name, CAST(f.resource_key AS VARCHAR)) AS queue,
    count(*) AS offered,
    sum(CASE WHEN f.technical_result = 'Abandoned' THEN 1 ELSE 0 END) AS abandoned,
    sum(CASE WHEN f.technical_result = 'Diverted' THEN 1 ELSE 0 END) AS distributed,
    round(
        100.0 * CAST(sum(CASE WHEN f.technical_result = 'Abandoned' THEN 1 ELSE 0 END) AS DOUBLE)
            / CAST(NULLIF(count(*), 0) AS DOUBLE),
        2
    ) AS abandon_rate_pct,
    round(avg(CAST(f.mediation_duration AS DOUBLE)), 1) AS avg_wait_secs,
    max(f.mediation_duration) AS max_wait_secs
FROM interaction_resource_fact f
LEFT JOIN resource_ r ON r.resource_key = f.resource_key
WHERE f.resource_role = 'Queue'
  AND f.day BETWEEN $from AND $to
  AND coalesce(r.resource_name, '') LIKE $queue
GROUP BY f.resource_key, r.resource_name
ORDER BY abandon_rate_pct DESC, offered DESC
