-- =====================================================================================
-- 12  Window gauges: ratios, means and quantiles
-- =====================================================================================
-- README "Exposition rules": "A ratio or mean is exported for a window only when its
-- denominator is positive."

CREATE OR REPLACE TABLE wser AS
SELECT
    kind, shop, l2, l3, wname,
    sum(n) FILTER (WHERE metric = 'service_level_contacts' AND lbl = 'answered_within') AS sl_in,
    sum(n) FILTER (WHERE metric = 'service_level_contacts' AND lbl = 'answered_after')  AS sl_out,
    sum(n) FILTER (WHERE metric = 'service_level_contacts' AND lbl = 'abandoned_after') AS sl_ab,
    sum(n) FILTER (WHERE metric = 'queued')                                 AS waits,
    sum(n) FILTER (WHERE metric = 'abandoned')                              AS abandoned,
    sum(n) FILTER (WHERE metric = 'short_abandoned')                        AS short_ab,
    sum(n) FILTER (WHERE metric = 'first_response_seconds')                 AS fr_n,
    sum(s) FILTER (WHERE metric = 'first_response_seconds')                 AS fr_s,
    sum(n) FILTER (WHERE metric = 'customer_messages_concluded' AND lbl = 'answered') AS msg_ans,
    sum(n) FILTER (WHERE metric = 'customer_messages_concluded')            AS msg_all,
    sum(n) FILTER (WHERE metric = 'runs' AND lbl = 'answered')              AS run_ans,
    sum(n) FILTER (WHERE metric = 'runs')                                   AS run_all,
    sum(n) FILTER (WHERE metric = 'response_seconds')                       AS resp_n,
    sum(s) FILTER (WHERE metric = 'response_seconds')                       AS resp_s,
    sum(n) FILTER (WHERE metric = 'conversations_ended')                    AS ended,
    sum(n) FILTER (WHERE metric = 'conversations_replied')                  AS replied,
    sum(n) FILTER (WHERE metric = 'handle_seconds')                         AS handle_n,
    sum(s) FILTER (WHERE metric = 'handle_seconds')                         AS handle_s,
    sum(n) FILTER (WHERE metric = 'resolved')                               AS resolved,
    sum(n) FILTER (WHERE metric = 'resolved_repeat')                        AS repeat,
    sum(n) FILTER (WHERE metric = 'conversations')                          AS convs,
    sum(n) FILTER (WHERE metric = 'transferred')                            AS transferred,
    sum(n) FILTER (WHERE metric = 'escalated')                              AS escalated,
    sum(n) FILTER (WHERE metric = 'csat_score')                             AS csat_n,
    sum(s) FILTER (WHERE metric = 'csat_score')                             AS csat_s,
    sum(n) FILTER (WHERE metric = 'csat_satisfied')                         AS satisfied,
    sum(n) FILTER (WHERE metric = 'csat_dissatisfied')                      AS dissatisfied,
    sum(n) FILTER (WHERE metric = 'csat_attitude' AND lbl = 'positive')     AS att_pos,
    sum(n) FILTER (WHERE metric = 'csat_attitude')                          AS att_all,
    sum(n) FILTER (WHERE metric = 'served')                                 AS served,
    sum(n) FILTER (WHERE metric = 'converted')                              AS converted,
    sum(n) FILTER (WHERE metric = 'orders_credited')                        AS credited,
    -- every credited pair has a 0/1 row per kind (10_metrics): sum the values
    sum(s) FILTER (WHERE metric = 'orders_returned' AND lbl = 'return')     AS returned,
    sum(s) FILTER (WHERE metric = 'orders_returned' AND lbl = 'exchange')   AS exchanged
FROM wagg
GROUP BY ALL;

-- name, numerator, denominator of every window ratio / mean (NULL sums count as 0)
CREATE OR REPLACE TABLE wratio AS
SELECT kind, shop, l2, l3, wname, name, num, den
FROM wser,
LATERAL (VALUES
    -- "cs_service_level_ratio = answered_within / (answered_within + answered_after +
    --  abandoned_after)"
    ('service_level_ratio', coalesce(sl_in, 0),
        coalesce(sl_in, 0) + coalesce(sl_out, 0) + coalesce(sl_ab, 0)),
    -- "cs_abandonment_ratio = abandoned / waits and cs_short_abandonment_ratio = short / waits"
    ('abandonment_ratio', coalesce(abandoned, 0), coalesce(waits, 0)),
    ('short_abandonment_ratio', coalesce(short_ab, 0), coalesce(waits, 0)),
    -- "cs_reply_rate_ratio (headline, the seeds' 回复率) = answered / concluded customer
    --  messages; cs_run_reply_rate_ratio = answered / concluded runs"
    ('reply_rate_ratio', coalesce(msg_ans, 0), coalesce(msg_all, 0)),
    ('run_reply_rate_ratio', coalesce(run_ans, 0), coalesce(run_all, 0)),
    -- "cs_conversation_reply_rate_ratio = replied / ended"
    ('conversation_reply_rate_ratio', coalesce(replied, 0), coalesce(ended, 0)),
    -- "cs_handle_time_window_seconds = mean"
    ('handle_time_window_seconds', coalesce(handle_s, 0) / 1000.0, coalesce(handle_n, 0)),
    -- "cs_first_contact_resolution_ratio = (resolved − repeat) / resolved"
    ('first_contact_resolution_ratio', coalesce(resolved, 0) - coalesce(repeat, 0),
        coalesce(resolved, 0)),
    -- "cs_resolution_ratio{window} = resolutions / segment closes (cs_resolved_total /
    --  cs_conversations_ended_total, both Q and A at the close): never above 1."
    ('resolution_ratio', coalesce(resolved, 0), coalesce(ended, 0)),
    -- "cs_transfer_ratio, cs_escalation_ratio = those / conversations"
    ('transfer_ratio', coalesce(transferred, 0), coalesce(convs, 0)),
    ('escalation_ratio', coalesce(escalated, 0), coalesce(convs, 0)),
    -- CSAT: mean normalised score, 好评 / 差评 shares, positive attitude share
    ('csat_mean_score', coalesce(csat_s, 0), coalesce(csat_n, 0)),
    ('csat_satisfied_ratio', coalesce(satisfied, 0), coalesce(csat_n, 0)),
    ('csat_dissatisfied_ratio', coalesce(dissatisfied, 0), coalesce(csat_n, 0)),
    ('attitude_positive_ratio', coalesce(att_pos, 0), coalesce(att_all, 0)),
    -- "cs_conversion_ratio = converted / served"
    ('conversion_ratio', coalesce(converted, 0), coalesce(served, 0)),
    -- "cs_return_ratio{window} and cs_exchange_ratio{window} = returned (exchanged) pairs /
    --  credited pairs (退货率, 换货率), for every window like the conversion ratio" (all three
    --  counted at X's served time, so never above 1)
    ('return_ratio', coalesce(returned, 0), coalesce(credited, 0)),
    ('exchange_ratio', coalesce(exchanged, 0), coalesce(credited, 0))
) r(name, num, den)
WHERE den > 0;

-- Window quantiles, README "Exposition rules": "Window quantiles (stat="p50|p90", with
-- avg = sum / count) come from the window's bucket counts like histogram_quantile:
-- rank = q × count; take the first non-empty bucket whose cumulative count reaches the rank and
-- interpolate linearly between its lower bound (0 for the first bucket) and its upper bound; a
-- rank in the +Inf bucket answers +Inf (the quantile is above the largest bucket: never a
-- capped number)."
CREATE OR REPLACE TABLE wquantile AS
WITH b AS (
    SELECT
        f.metric, f.kind, f.shop, f.l2, f.l3, f.wname, i AS bucket,
        coalesce(x.cnt, 0) AS cnt,
        CASE WHEN i <= len(d.bounds) THEN d.bounds[i] / d.div END AS upper,
        CASE WHEN i = 1 THEN 0.0 ELSE d.bounds[i - 1] / d.div END AS lower
    FROM (SELECT DISTINCT metric, kind, shop, l2, l3, wname FROM wbuckets) f
    JOIN metric_def d USING (metric)
    CROSS JOIN LATERAL (SELECT unnest(range(1, len(d.bounds) + 2)) AS i)
    LEFT JOIN wbuckets x ON x.metric = f.metric AND x.kind = f.kind AND x.shop = f.shop
        AND x.l2 = f.l2 AND x.l3 = f.l3 AND x.wname = f.wname AND x.bucket = i
), c AS (
    SELECT *,
        sum(cnt) OVER (PARTITION BY metric, kind, shop, l2, l3, wname ORDER BY bucket) AS cum,
        sum(cnt) OVER (PARTITION BY metric, kind, shop, l2, l3, wname) AS total
    FROM b
), q AS (
    SELECT c.*, qq.stat, qq.qv * c.total AS rnk
    FROM c CROSS JOIN (VALUES ('p50', 0.5), ('p90', 0.9)) qq(stat, qv)
)
SELECT
    metric, kind, shop, l2, l3, wname, stat,
    arg_min(CASE WHEN upper IS NULL THEN CAST('inf' AS DOUBLE)
                 ELSE lower + (upper - lower) * (rnk - (cum - cnt)) / cnt END, bucket)
        AS value
FROM q
WHERE cnt > 0 AND cum >= rnk
GROUP BY ALL;

-- "cs_first_response_tier_ratio{shop, queue, channel, window, tier} = within / answered waits
-- in the window (1m … 60m, today), exported when the window has an answered wait".
CREATE OR REPLACE TABLE wtier AS
SELECT kind, shop, l2, l3, wname, lbl AS tier, s AS num, n AS den
FROM wagg
WHERE metric = 'first_response_within' AND n > 0;

-- README "Customers received (接待数), conversion by customers, after-sales": a customer count
-- "is exported in totals and in today only (cs_agent_received_customers{window="today"},
-- cs_team_…; 0 included for every series with a …_customers_received_total)";
-- "…_customer_conversion_ratio{window="today"} = converted / received";
-- "…_customer_refund_ratio{window="today"} = refunded / converted" (ratios only when the
-- denominator is positive: "Exposition rules").  Count time: the day's local midnight, which
-- is in "today" exactly for the customers of today's local date.
CREATE OR REPLACE TABLE customer_today AS
SELECT
    t.kind, t.shop, t.l2, t.l3,
    CAST(coalesce(sum(w.n) FILTER (WHERE w.metric = 'customers_received'), 0) AS DOUBLE)
        AS received,
    CAST(coalesce(sum(w.n) FILTER (WHERE w.metric = 'customers_converted'), 0) AS DOUBLE)
        AS converted,
    CAST(coalesce(sum(w.n) FILTER (WHERE w.metric = 'customers_refunded'), 0) AS DOUBLE)
        AS refunded
FROM (SELECT DISTINCT kind, shop, l2, l3 FROM totals WHERE metric = 'customers_received') t
LEFT JOIN wagg w ON w.kind = t.kind AND w.shop = t.shop AND w.l2 = t.l2 AND w.l3 = t.l3
                AND w.wname = 'today'
                AND w.metric IN ('customers_received', 'customers_converted',
                                 'customers_refunded')
GROUP BY t.kind, t.shop, t.l2, t.l3;

-- "cs_agent_customers_received_by_hour{hour="0".."23"} (and cs_team_…) is today's count per
-- hour (count time: the day's midnight), exported for every hour with a count."
CREATE OR REPLACE TABLE customers_by_hour_today AS
SELECT kind, shop, l2, l3, lbl AS hour, CAST(n AS DOUBLE) AS value
FROM wagg
WHERE metric = 'customers_received_by_hour' AND wname = 'today' AND n > 0;
