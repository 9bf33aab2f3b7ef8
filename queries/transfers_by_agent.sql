-- Transfers per agent: agent legs offered, answered, transferred onwards, ring-no-answer redirects, and transfer rate of answered calls
SELECT
    coalesce(r.resource_name, CAST(f.resource_key AS VARCHAR)) AS agent,
    count(*) AS offered,
    sum(CASE WHEN f.talk_count > 0 THEN 1 ELSE 0 END) AS answered,
    sum(CASE WHEN f.technical_result = 'Transferred' THEN 1 ELSE 0 END) AS transferred,
    sum(CASE WHEN f.technical_result = 'Redirected' THEN 1 ELSE 0 END) AS ring_no_answer,
    round(
        100.0 * CAST(sum(CASE WHEN f.technical_result = 'Transferred' THEN 1 ELSE 0 END) AS DOUBLE)
            / CAST(NULLIF(sum(CASE WHEN f.talk_count > 0 THEN 1 ELSE 0 END), 0) AS DOUBLE),
        2
    ) AS transfer_rate_pct
FROM interaction_resource_fact f
LEFT JOIN resource_ r ON r.resource_key = f.resource_key
WHERE f.resource_role = 'Received'
GROUP BY f.resource_key, r.resource_name
ORDER BY transferred DESC, agent
