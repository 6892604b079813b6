-- =====================================================================================
-- 13  Volumes, waiting now, sessions, presence, shop and pipeline
-- =====================================================================================

-- README "Volumes": "cs_hourly_volume{hour, kind} (queue series, today): conversations (at
-- creation), customer_messages, agent_messages, customer_chars, agent_chars by local hour of
-- their time."
CREATE OR REPLACE TABLE hourly_volume AS
WITH items AS (
    SELECT shop, q0 AS l2, ch0 AS l3, created AS t, 'conversations' AS vkind, 1.0 AS v
    FROM conv
    UNION ALL
    SELECT shop, q, ch, eff, sender || '_messages', 1.0 FROM ce
    WHERE type = 'message.sent' AND sender IN ('customer', 'agent')
    UNION ALL
    SELECT shop, q, ch, eff, sender || '_chars', CAST(chars AS DOUBLE) FROM ce
    WHERE type = 'message.sent' AND sender IN ('customer', 'agent')
)
SELECT i.shop, i.l2, i.l3, local_hour(c.tz, i.t) AS hour, i.vkind, sum(i.v) AS value
FROM items i
JOIN win w ON w.shop = i.shop AND w.wname = 'today' AND i.t BETWEEN w.a AND w.e
JOIN shop_cal c ON c.shop = i.shop
GROUP BY ALL;

-- README "Waiting now": "An open conversation is waiting since its wait start while its wait is
-- not settled, and after the wait is answered, since the first message of its last run while
-- that run is unanswered. It is counted under its current Q and A: cs_waiting_conversations,
-- cs_oldest_waiting_seconds (now − earliest waiting-since, 0 if none), and the cs_agent_ pair.
-- Both return to 0 when conversations close or expire."
CREATE OR REPLACE TABLE waiting_now AS
WITH cur AS (                      -- the open segment of every open conversation
    SELECT c.*, s.sid
    FROM conv c
    JOIN (SELECT iid, max(segno) AS segno FROM seg GROUP BY iid) m USING (iid)
    JOIN seg s ON s.iid = m.iid AND s.segno = m.segno
    WHERE c.open_now AND s.close_seq IS NULL
), pending_run AS (
    SELECT sid, min(first_eff) AS since FROM runs WHERE outcome IS NULL GROUP BY sid
)
SELECT
    cur.iid, cur.shop, cur.q_now, cur.ch_now, cur.tm_now, cur.ag_now,
    CASE WHEN w.outcome = 'waiting' THEN w.ws_eff
         WHEN w.outcome = 'answered' THEN p.since END AS since
FROM cur
LEFT JOIN waits w ON w.sid = cur.sid
LEFT JOIN pending_run p ON p.sid = cur.sid
WHERE (w.outcome = 'waiting') OR (w.outcome = 'answered' AND p.since IS NOT NULL);

-- README "Agents": "cs_agent_open_sessions: sessions open now."
CREATE OR REPLACE TABLE open_sessions AS
SELECT shop, team AS l2, agent AS l3, count(*) AS n
FROM holdings WHERE end_eff IS NULL
GROUP BY ALL;

-- The series known to this log (waiting and open-session gauges are 0 for a series with none).
CREATE OR REPLACE TABLE series AS
SELECT DISTINCT kind, shop, l2, l3 FROM (
    SELECT kind, shop, l2, l3 FROM totals WHERE kind IN ('q', 'a')
    UNION ALL SELECT 'q', shop, q_now, ch_now FROM waiting_now
    UNION ALL SELECT 'a', shop, tm_now, ag_now FROM waiting_now WHERE ag_now IS NOT NULL
    UNION ALL SELECT 'a', shop, team, agent FROM holdings
    UNION ALL SELECT 'a', shop, team, agent FROM agent_status
);

CREATE OR REPLACE TABLE waiting_gauges AS
SELECT
    s.kind, s.shop, s.l2, s.l3,
    count(x.since) AS waiting,
    coalesce((p.now_ms - min(x.since)) / 1000.0, 0.0) AS oldest
FROM series s
CROSS JOIN params p
LEFT JOIN (
    SELECT 'q' AS kind, shop, q_now AS l2, ch_now AS l3, since FROM waiting_now
    UNION ALL
    SELECT 'a', shop, tm_now, ag_now, since FROM waiting_now WHERE ag_now IS NOT NULL
) x ON x.kind = s.kind AND x.shop = s.shop AND x.l2 = s.l2 AND x.l3 = s.l3
GROUP BY s.kind, s.shop, s.l2, s.l3, p.now_ms;

-- Agent window counts: "cs_agent_handled_conversations{window} is the count in each window and
-- today"; "cs_agent_forbidden_phrase_uses{window} is the sum in each window and today".  Not a
-- ratio or a mean (those need a positive denominator): like cs_agent_max_open_sessions, a value
-- for every agent series and every window, 0 included.
CREATE OR REPLACE TABLE agent_window_counts AS
SELECT s.shop, s.l2, s.l3, w.wname, g.name,
       CAST(coalesce(sum(x.s), 0) AS DOUBLE) AS value
FROM series s
JOIN win w ON w.shop = s.shop
CROSS JOIN (VALUES ('handled_conversations', 'conversations_handled'),
                   ('forbidden_phrase_uses', 'forbidden_phrases')) g(name, metric)
LEFT JOIN wagg x ON x.metric = g.metric AND x.kind = 'a' AND x.shop = s.shop
                AND x.l2 = s.l2 AND x.l3 = s.l3 AND x.wname = w.wname
WHERE s.kind = 'a'
GROUP BY s.shop, s.l2, s.l3, w.wname, g.name;

-- README "Agent presence and concurrency": over a window's interval [a, now], with n(t) the
-- agent's open sessions and c(t) its max concurrency:
--   "cs_agent_online_rate_ratio = online time / (last online − first online), where first/last
--    online are the earliest/latest instants of [a, now] at which the agent is online (an agent
--    online at local midnight is first online at midnight); only when last > first."
--   "cs_agent_slot_utilisation_ratio = ∫ online·min(n, c) dt / ∫ online·c dt"
--   "cs_agent_max_open_sessions = max of n(t) on [a, now]."
--   "today only: cs_agent_online_today_seconds, cs_agent_logins_today (status events in
--    [a, now] that move the agent from offline to any other status),
--    cs_agent_first_online_timestamp_seconds, cs_agent_last_online_timestamp_seconds,
--    cs_agent_offline_during_shift_today_seconds = (last − first online) − online time."
CREATE OR REPLACE TABLE presence_win AS
WITH clip AS (
    SELECT
        p.shop, p.team, p.agent, w.wname, w.a, w.e, p.n, p.c,
        p.status IN ('online', 'busy') AS online,
        greatest(p.t, w.a) AS lo,
        least(coalesce(p.t2, 9223372036854775807), w.e) AS hi
    FROM presence_tl p
    JOIN win w ON w.shop = p.shop
    WHERE p.t <= w.e AND coalesce(p.t2, 9223372036854775807) > w.a
)
SELECT
    shop, team, agent, wname,
    coalesce(sum(hi - lo) FILTER (WHERE online), 0)                      AS online_ms,
    coalesce(sum((hi - lo) * least(n, c)) FILTER (WHERE online), 0)      AS slot_used,
    coalesce(sum((hi - lo) * c) FILTER (WHERE online), 0)                AS slot_all,
    min(lo) FILTER (WHERE online)                                        AS first_online,
    max(hi) FILTER (WHERE online)                                        AS last_online,
    max(n)                                                               AS max_n
FROM clip
GROUP BY ALL;

CREATE OR REPLACE TABLE logins_today AS
SELECT s.shop, s.team, s.agent, count(*) FILTER (WHERE s.prev_status = 'offline'
       AND s.status <> 'offline' AND s.eff BETWEEN w.a AND w.e) AS logins
FROM agent_status s
JOIN win w ON w.shop = s.shop AND w.wname = 'today'
GROUP BY ALL;

-- Now: "cs_agent_online (1/0), cs_agent_max_concurrency, cs_agent_slot_utilisation_now_ratio =
-- min(open sessions, c) / c while online."
CREATE OR REPLACE TABLE agent_now AS
SELECT
    s.shop, s.team, s.agent,
    s.status IN ('online', 'busy') AS online,
    s.c,
    coalesce(o.n, 0) AS open_n
FROM agent_status s
LEFT JOIN open_sessions o ON o.shop = s.shop AND o.l2 = s.team AND o.l3 = s.agent
QUALIFY row_number() OVER (PARTITION BY s.shop, s.team, s.agent ORDER BY s.ord DESC) = 1;

-- README "Shop: peak and staffing": "cs_peak_hour{shop} is 1 while now is in the shop's peak
-- calendar (local time, DST aware)."  Peaks are half-open local [HH:MM, HH:MM) ranges; sale
-- days (MM-DD) are peak all day.
CREATE OR REPLACE TABLE peak AS
WITH l AS (
    SELECT c.shop, c.peaks, c.sale_days,
           timezone(c.tz, to_timestamp(p.now_s)) AS lt
    FROM shop_cal c CROSS JOIN params p
), m AS (
    SELECT shop, peaks, sale_days, strftime(lt, '%m-%d') AS mmdd,
           hour(lt) * 3600 + minute(lt) * 60 + second(lt)
               + microsecond(lt) % 1000000 / 1e6 AS sod
    FROM l
)
SELECT
    shop,
    list_contains(sale_days, mmdd) OR coalesce(list_bool_or(list_transform(peaks, lambda pk:
        (CAST(split_part(pk[1], ':', 1) AS INT) * 3600 + CAST(split_part(pk[1], ':', 2) AS INT) * 60
            <= sod)
        AND (sod < CAST(split_part(pk[2], ':', 1) AS INT) * 3600
                   + CAST(split_part(pk[2], ':', 2) AS INT) * 60))), false) AS is_peak
FROM m;

-- Staffing inputs, per shop, at now:
--   "arrival rate = (waits settled with wait start in the 15m window + waits not yet settled
--    that started in it) / 900 s; AHT = mean queue handle time of closes in the 60m window
--    (else today's, else 0); concurrency = mean max_concurrency of the agents online now (1 if
--    none); agents online = agents whose status is online or busy now; patience = (Σ first
--    response times + Σ abandon waits) / abandons, over answers and abandons in the 60m window."
CREATE OR REPLACE TABLE staffing_inputs AS
WITH arr AS (
    SELECT w.shop, count(*) AS n
    FROM waits x JOIN win w ON w.shop = x.shop AND w.wname = '15m'
    WHERE x.ws_eff BETWEEN w.a AND w.e
    GROUP BY ALL
), ht AS (
    SELECT shop,
           sum(s) FILTER (WHERE wname = '60m') AS s60, sum(n) FILTER (WHERE wname = '60m') AS n60,
           sum(s) FILTER (WHERE wname = 'today') AS sd, sum(n) FILTER (WHERE wname = 'today') AS nd
    FROM wagg WHERE metric = 'handle_seconds' AND kind = 'q'
    GROUP BY shop
), pat AS (
    SELECT shop,
           sum(s) FILTER (WHERE metric IN ('first_response_seconds', 'abandon_wait_seconds'))
               AS s,
           sum(n) FILTER (WHERE metric = 'abandon_wait_seconds') AS n
    FROM wagg
    WHERE kind = 'q' AND wname = '60m'
      AND metric IN ('first_response_seconds', 'abandon_wait_seconds')
    GROUP BY shop
), ag AS (
    SELECT shop, count(*) AS online, avg(c) AS conc
    FROM agent_now WHERE online GROUP BY shop
)
SELECT
    s.shop,
    coalesce(arr.n, 0) / 900.0                                   AS arrival_rate,
    CASE WHEN ht.n60 > 0 THEN ht.s60 / 1000.0 / ht.n60
         WHEN ht.nd > 0 THEN ht.sd / 1000.0 / ht.nd
         ELSE 0.0 END                                            AS aht,
    coalesce(ag.conc, 1.0)                                       AS concurrency,
    coalesce(ag.online, 0)                                       AS agents_online,
    CASE WHEN pat.n > 0 THEN pat.s / 1000.0 / pat.n END          AS patience
FROM shops s
LEFT JOIN arr USING (shop)
LEFT JOIN ht USING (shop)
LEFT JOIN pat USING (shop)
LEFT JOIN ag USING (shop);
