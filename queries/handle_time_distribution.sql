-- Distribution of agent handle time (talk + hold + after-call work) in one-minute buckets, with each bucket's share of answered calls
-- param: from:date=1970-01-01 first UTC day, inclusive
-- param: to:date=9999-12-31 last UTC day, inclusive
WITH handled AS (
    SELECT (f.talk_duration + f.hold_duration + f.after_call_work_duration) / 60 AS minute_bucket
    FROM interaction_resource_fact f
    WHERE f.resource_role = 'Received'
      AND f.talk_count > 0
      AND f.day BETWEEN $from AND $to
)
SELECT
    minute_bucket * 60 AS from_secs,
    minute_bucket * 60 + 59 AS to_secs,
    count(*) AS answered,
    round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS share_pct
FROM handled
GROUP BY minute_bucket
ORDER BY minute_bucket
