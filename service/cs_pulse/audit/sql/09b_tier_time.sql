-- =====================================================================================
-- 09b  First response against channel tiers: opening hours and tier time
-- =====================================================================================
-- README "First response against channel tiers":
--   "Every answered wait (the ones in cs_first_response_seconds) is classified under Q_w at
--    the answer time: it is within a tier if its tier time ≤ the tier's target."
--   "Tier time on the wall clock is the first response time. On the business clock it is the
--    part of [wait start, answer) that falls in the shop's opening hours (below): time while
--    the shop is closed is not counted ...; a wait that starts and is answered while closed has
--    tier time 0. A shop with no opening hours is always open (business = wall)."
--   "Opening hours are part of the shop calendar (CS_PULSE_SHOPS): "opening": [[days, "HH:MM",
--    "HH:MM"], ...] in local time, half-open [start, end), end may be 24:00, an interval does
--    not cross midnight ...; "closed": ["MM-DD" or "YYYY-MM-DD", ...] are whole local days
--    closed (holidays). Local times are converted with the shop's time zone on each date (a DST
--    change inside an interval makes that day's interval an hour shorter or longer)."
--   "Targets and clocks are configured in the same file, top level: "first_response_tiers":
--    {...}; a channel or field not given keeps its default."
-- The glue has parsed the config: shop_cal.opening = [[ISO day, start minute, end minute]],
-- shop_cal.closed, tier_cfg(channel, tier, target_s, clock) with the defaults filled in.
-- A queue series whose channel has no tier config (channel "") is measured against chat's
-- (the README: "phone takes chat's").

-- Answered waits (count time: the answer; series Q_w) with the tier config of their channel.
CREATE OR REPLACE TABLE fr_answered AS
WITH ch AS (SELECT DISTINCT channel, clock FROM tier_cfg)
SELECT
    w.sid, w.shop, w.ws_q, w.ws_ch, w.ws_eff, w.ans_eff,
    coalesce(own.channel, 'chat') AS cfg_ch,
    coalesce(own.clock, chat.clock) AS clock
FROM waits w
LEFT JOIN ch own ON own.channel = w.ws_ch
CROSS JOIN (SELECT clock FROM ch WHERE channel = 'chat') chat
WHERE w.outcome = 'answered';

-- Local dates to lay opening intervals on: per shop with opening hours and business-clock
-- waits, from the day before its earliest wait start to the day after its latest answer.
CREATE OR REPLACE TABLE open_days AS
WITH r AS (
    SELECT
        a.shop, c.tz, c.opening, c.closed,
        CAST(timezone(c.tz, make_timestamp(min(a.ws_eff) * 1000)::TIMESTAMPTZ) AS DATE) - 1
            AS d0,
        CAST(timezone(c.tz, make_timestamp(max(a.ans_eff) * 1000)::TIMESTAMPTZ) AS DATE) + 1
            AS d1
    FROM fr_answered a
    JOIN shop_cal c ON c.shop = a.shop
    WHERE a.clock = 'business' AND len(c.opening) > 0
    GROUP BY a.shop, c.tz, c.opening, c.closed
)
SELECT shop, tz, opening, closed,
       CAST(unnest(generate_series(d0, d1, INTERVAL 1 DAY)) AS DATE) AS d
FROM r;

-- Opening intervals [s, e) in epoch ms: each rule on the dates of its day, except closed
-- dates; local start and end converted with the zone on that date.
CREATE OR REPLACE TABLE open_iv AS
SELECT
    shop,
    epoch_ms(timezone(tz, d + to_minutes(CAST(o[2] AS BIGINT)))) AS s,
    epoch_ms(timezone(tz, d + to_minutes(CAST(o[3] AS BIGINT)))) AS e
FROM (SELECT shop, tz, closed, d, unnest(opening) AS o FROM open_days)
WHERE o[1] = isodow(d)
  AND NOT list_contains(closed, strftime(d, '%m-%d'))
  AND NOT list_contains(closed, strftime(d, '%Y-%m-%d'));

-- Opening hours as disjoint intervals (overlapping or touching rules merged), so that the
-- measure of an intersection counts each instant once.
CREATE OR REPLACE TABLE open_hours AS
WITH o AS (
    SELECT shop, s, e,
           max(e) OVER (PARTITION BY shop ORDER BY s, e
                        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
    FROM open_iv
    WHERE e > s
), g AS (
    SELECT *,
           sum(CASE WHEN prev_end IS NULL OR s > prev_end THEN 1 ELSE 0 END)
               OVER (PARTITION BY shop ORDER BY s, e ROWS UNBOUNDED PRECEDING) AS grp
    FROM o
)
SELECT shop, min(s) AS s, max(e) AS e FROM g GROUP BY shop, grp;

-- Tier time (ms) of every answered wait: wall = first response time; business = measure of
-- [wait start, answer) ∩ opening hours (= wall for a shop without opening hours).
CREATE OR REPLACE TABLE fr_tier_time AS
WITH biz AS (
    SELECT a.sid, sum(least(a.ans_eff, h.e) - greatest(a.ws_eff, h.s)) AS open_ms
    FROM fr_answered a
    JOIN open_hours h ON h.shop = a.shop AND h.s < a.ans_eff AND h.e > a.ws_eff
    WHERE a.clock = 'business'
    GROUP BY a.sid
)
SELECT
    a.*,
    CASE WHEN a.clock = 'business' AND len(c.opening) > 0 THEN coalesce(b.open_ms, 0)
         ELSE a.ans_eff - a.ws_eff END AS tier_ms
FROM fr_answered a
JOIN shop_cal c ON c.shop = a.shop
LEFT JOIN biz b ON b.sid = a.sid;
