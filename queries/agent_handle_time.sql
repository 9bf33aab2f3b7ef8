-- Average handle time per agent (talk + hold + after-call work, seconds) over the calls the agent answered
SELECT
    coalesce(r.resource_name, CAST(f.resource_key AS VARCHAR)) AS agent,
    r.agent_first_name AS first_name,
    r.agent_last_name AS last_name,
    count(*) AS answered,
    sum(f.talk_duration) AS talk_secs,
    sum(f.hold_duration) AS hold_secs,
    sum(f.after_call_work_duration) AS acw_secs,
    round(
        CAST(sum(f.talk_duration + f.hold_duration + f.after_call_work_duration) AS DOUBLE)
            / CAST(NULLIF(count(*), 0) AS DOUBLE),
        1
    ) AS avg_handle_secs,
    round(avg(CAST(f.ring_duration AS DOUBLE)), 1) AS avg_ring_secs
FROM interaction_resource_fact f
LEFT JOIN resource_ r ON r.resource_key = f.resource_key
WHERE f.resource_role = 'Received'
  AND f.talk_count > 0
GROUP BY f.resource_key, r.resource_name, r.agent_first_name, r.agent_last_name
ORDER BY avg_handle_secs DESC
