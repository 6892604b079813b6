-- =====================================================================================
-- 07  Agent status, presence timeline and windows
-- =====================================================================================
-- README "Agent presence and concurrency":
--   "An agent series (shop, team, agent of the agent.status event) has a status over time: each
--    agent.status sets it from its time on; before the first it is offline. Online = online or
--    busy. max_concurrency is the last value ≥ 1 given (0 or missing keeps the previous; 1
--    before any). agent.heartbeat changes nothing."

CREATE OR REPLACE TABLE agent_status AS
SELECT
    shop_id AS shop, coalesce(team, '') AS team, agent_id AS agent,
    eff, part, off, status,
    row_number() OVER w AS ord,
    coalesce(last_value(CASE WHEN max_concurrency >= 1 THEN max_concurrency END IGNORE NULLS)
                 OVER w, 1) AS c,
    coalesce(lag(status) OVER w, 'offline') AS prev_status
FROM evx
WHERE type = 'agent.status' AND outcome = 'apply'
WINDOW w AS (PARTITION BY shop_id, coalesce(team, ''), agent_id ORDER BY eff, part, off
             ROWS UNBOUNDED PRECEDING);

-- Timeline: every instant at which the status, the concurrency or the number of open sessions
-- of a series may change; each row holds on [t, t2).
CREATE OR REPLACE TABLE presence_tl AS
WITH pts AS (
    SELECT shop, team, agent, t,
           sum(d) AS d,
           arg_max(status, ord) FILTER (WHERE status IS NOT NULL) AS status,
           arg_max(c, ord) FILTER (WHERE status IS NOT NULL)      AS c
    FROM (
        SELECT shop, team, agent, eff AS t, 0 AS d, status, c, ord FROM agent_status
        UNION ALL
        SELECT shop, team, agent, start_eff, 1, NULL, NULL, NULL FROM holdings
        UNION ALL
        SELECT shop, team, agent, end_eff, -1, NULL, NULL, NULL FROM holdings
        WHERE end_eff IS NOT NULL
    )
    GROUP BY shop, team, agent, t
)
SELECT
    shop, team, agent, t,
    lead(t) OVER w AS t2,
    sum(d) OVER (w ROWS UNBOUNDED PRECEDING) AS n,
    coalesce(last_value(status IGNORE NULLS) OVER (w ROWS UNBOUNDED PRECEDING), 'offline')
        AS status,
    coalesce(last_value(c IGNORE NULLS) OVER (w ROWS UNBOUNDED PRECEDING), 1) AS c
FROM pts
WINDOW w AS (PARTITION BY shop, team, agent ORDER BY t);
