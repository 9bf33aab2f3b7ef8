-- Agent occupancy, average handle time and not-ready share per agent and hour (from the AG2_AGENT_HOUR aggregate)
-- param: from:date=1970-01-01 first UTC day, inclusive
-- param: to:date=9999-12-31 last UTC day, inclusive
-- param: agent:text=% agent user name or LIKE pattern
SELECT
    r.resource_name AS agent,
    to_timestamp(a.date_time_key) AS hour_utc,
    a.offered,
    a.accepted,
    ROUND(CAST(a.talk_secs + a.hold_secs + a.after_call_work_secs AS DOUBLE) / NULLIF(a.accepted, 0), 1) AS aht_secs,
    ROUND(100.0 * (a.busy_secs + a.after_call_work_state_secs)
          / NULLIF(a.busy_secs + a.after_call_work_state_secs + a.ready_secs, 0), 1) AS occupancy_pct,
    ROUND(100.0 * a.not_ready_secs
          / NULLIF(a.busy_secs + a.after_call_work_state_secs + a.ready_secs + a.not_ready_secs, 0), 1) AS not_ready_pct
FROM ag2_agent_hour a
LEFT JOIN resource_ r ON a.resource_key = r.resource_key
WHERE a.day BETWEEN $from AND $to
  AND coalesce(r.resource_name, '') LIKE $agent
ORDER BY hour_utc, agent
