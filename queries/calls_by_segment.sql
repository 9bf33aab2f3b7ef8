-- Calls per customer segment and service type from attached data (the configured user-data keys), with how many were answered at the first agent who took them (no transfer)
-- param: from:date=1970-01-01 first UTC day, inclusive
-- param: to:date=9999-12-31 last UTC day, inclusive
WITH attached AS (
    SELECT
        u.interaction_id,
        max(CASE WHEN u.key_name = 'CustomerSegment' THEN u.value END) AS segment,
        max(CASE WHEN u.key_name = 'ServiceType' THEN u.value END) AS service_type
    FROM interaction_user_data_fact u
    WHERE u.day BETWEEN $from AND $to
    GROUP BY u.interaction_id
),
answered AS (
    SELECT r.interaction_id, count(*) AS agents
    FROM interaction_resource_fact r
    WHERE r.resource_role = 'Received' AND r.talk_count > 0
    GROUP BY r.interaction_id
)
SELECT
    coalesce(a.segment, '(none)') AS segment,
    coalesce(a.service_type, '(none)') AS service_type,
    count(*) AS calls,
    count(*) FILTER (WHERE ans.agents = 1) AS resolved_by_first_agent,
    count(*) FILTER (WHERE ans.agents IS NULL) AS not_answered
FROM interaction_fact f
LEFT JOIN attached a ON a.interaction_id = f.interaction_id
LEFT JOIN answered ans ON ans.interaction_id = f.interaction_id
WHERE f.day BETWEEN $from AND $to
GROUP BY 1, 2
ORDER BY calls DESC, segment, service_type
