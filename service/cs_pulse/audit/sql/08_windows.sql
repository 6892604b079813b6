-- =====================================================================================
-- 08  Shops, calendars and windows
-- =====================================================================================
-- README "Time, order and lateness":
--   "Windows. Rolling windows 1m, 5m, 15m, 60m at instant now (seconds): with
--    s = floor(now / 10) × 10, window W covers [s − W + 10, now] — the W/10 ten-second slots
--    ending with the one holding now. today covers [local midnight, now] of now's date in the
--    shop's time zone (CS_PULSE_SHOPS; default Asia/Shanghai). A counted item is in a window
--    when its count time (given per metric below) is in it. Time-weighted values integrate
--    over the window's interval."

-- Every shop the data knows: conversations, agent series, orders.
-- README "Shop: peak and staffing": "Shop metrics exist for every shop that has had a
-- conversation, an agent status or an order."  Read literally, "an order" is an order.paid:
-- the README tells orders and after-sales events apart ("ratings, orders and after-sales
-- events included"), so an order.refunded / order.returned alone does not make a shop exist
-- here (its cs_refunds_* / cs_order_returns_total counters exist all the same).
CREATE OR REPLACE TABLE shops AS
SELECT DISTINCT shop FROM (
    SELECT shop FROM conv
    UNION ALL SELECT shop FROM agent_status
    UNION ALL SELECT shop_id FROM evx WHERE type = 'order.paid' AND outcome <> 'dup'
) WHERE shop IS NOT NULL;

CREATE OR REPLACE TABLE shop_cal AS
SELECT
    s.shop,
    coalesce(c.tz, d.tz)               AS tz,
    coalesce(c.peaks, d.peaks)         AS peaks,
    coalesce(c.sale_days, d.sale_days) AS sale_days,
    coalesce(c.opening, d.opening)     AS opening,
    coalesce(c.closed, d.closed)       AS closed
FROM shops s
LEFT JOIN shop_cfg c ON c.shop = s.shop
CROSS JOIN (SELECT * FROM shop_cfg WHERE shop = '') d;

-- win(shop, window, a, e): the closed interval [a, e] of each window, in ms.
CREATE OR REPLACE TABLE win AS
WITH r AS (
    SELECT
        p.now_ms,
        (p.now_ms // 10000) * 10000 AS s_ms
    FROM params p
)
SELECT c.shop, w.wname, r.s_ms - w.len_ms + 10000 AS a, r.now_ms AS e
FROM shop_cal c
CROSS JOIN r
CROSS JOIN (VALUES ('1m', 60000), ('5m', 300000), ('15m', 900000), ('60m', 3600000))
    w(wname, len_ms)
UNION ALL
SELECT
    c.shop, 'today',
    epoch_ms(timezone(c.tz, date_trunc('day', timezone(c.tz, to_timestamp(p.now_s))))),
    p.now_ms
FROM shop_cal c CROSS JOIN params p;

-- Local hour of an instant in a shop's zone.
CREATE OR REPLACE MACRO local_hour(tz, t_ms) AS
    hour(timezone(tz, make_timestamp(CAST(t_ms AS BIGINT) * 1000)::TIMESTAMPTZ));
