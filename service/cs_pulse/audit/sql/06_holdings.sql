-- =====================================================================================
-- 06  Holdings (agent sessions)
-- =====================================================================================
-- README "Agents: sessions and handle time":
--   "A conversation is held by its agent while it is open: from the event that gives it the
--    agent (or from a reopen, if it has one) until the agent changes or the conversation
--    closes. Each holding is a session of that agent."
-- A holding is an island of consecutive events of one open period with the same non-empty
-- agent; it ends at the event that changes the agent, or at the close; it is still open when
-- the period is. Its agent series is (shop, team as of its first event, agent).

CREATE OR REPLACE TABLE holdings AS
WITH chg AS (
    SELECT
        sid, iid, seq, eff, ag, tm, shop, closing,
        CASE WHEN ag IS NOT DISTINCT FROM lag(ag) OVER w THEN 0 ELSE 1 END AS is_new
    FROM segev
    WINDOW w AS (PARTITION BY sid ORDER BY seq)
), isl AS (
    SELECT *, sum(is_new) OVER (PARTITION BY sid ORDER BY seq ROWS UNBOUNDED PRECEDING) AS isl_no
    FROM chg
), agg AS (
    SELECT
        sid, iid, isl_no,
        any_value(ag)             AS agent,
        any_value(shop)           AS shop,
        arg_min(tm, seq)          AS team,
        min(eff)                  AS start_eff,
        max(seq)                  AS last_seq,
        bool_or(closing)          AS has_close,
        max(CASE WHEN closing THEN eff END) AS close_eff
    FROM isl
    GROUP BY sid, iid, isl_no
)
SELECT
    a.sid, a.iid, a.shop, a.team, a.agent, a.start_eff,
    coalesce(n.eff, a.close_eff) AS end_eff          -- NULL: still held
FROM agg a
LEFT JOIN segev n ON n.sid = a.sid AND n.seq = a.last_seq + 1
WHERE a.agent IS NOT NULL;
