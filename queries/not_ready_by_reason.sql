-- Not-ready time by reason code: periods, agents, total and average seconds (ended periods only)
SELECT
    coalesce(s.state_reason, '(no reason)') AS reason,
    count(*) AS periods,
    count(DISTINCT s.resource_key) AS agents,
    sum(s.total_duration) AS not_ready_secs,
    round(avg(CAST(s.total_duration AS DOUBLE)), 1) AS avg_secs,
    max(s.total_duration) AS max_secs
FROM sm_res_state_fact s
WHERE s.resource_state = 'NotReady'
GROUP BY coalesce(s.state_reason, '(no reason)')
ORDER BY not_ready_secs DESC
