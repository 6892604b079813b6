-- =====================================================================================
-- 14  Exposition: every sample as (name, labels [[key, value], ...], value)
-- =====================================================================================
-- README "Exposition rules": "Queue series: prefix cs_, labels shop, queue, channel; agent
-- series: prefix cs_agent_, labels shop, team, agent; shop metrics: label shop."
-- "Presence gauges exist for agent series that have had an agent.status event;
-- cs_agent_first/last_online_timestamp_seconds and ..._offline_during_shift_today_seconds only
-- when the agent was online at some instant today; cs_agent_max_open_sessions for every agent
-- series and agent window. Waiting and open-session gauges are 0 for a series with none."
-- "cs_window_end_timestamp_seconds is the now at which a page's windows were computed".
-- "Per agent, durations are summaries ... (no buckets ...)" and "Per agent, window gauges exist
-- for windows 60m and today only": both applied at the end of this file, on the samples; the
-- tables before it keep every agent window (the reports query them).

-- Window stats of a histogram: cs_first_response_window_seconds, cs_response_window_seconds,
-- cs_resolution_window_seconds ("like the other window quantiles").
CREATE OR REPLACE MACRO window_stat_name(metric) AS
    CASE metric WHEN 'first_response_seconds' THEN 'first_response_window_seconds'
                WHEN 'response_seconds' THEN 'response_window_seconds'
                WHEN 'resolution_seconds' THEN 'resolution_window_seconds' END;

CREATE OR REPLACE TABLE samples AS
-- counters
SELECT metric_prefix(t.kind) || t.metric || '_total' AS name,
       CASE WHEN d.lbl_key IS NULL THEN series_labels(t.kind, t.shop, t.l2, t.l3)
            ELSE list_append(series_labels(t.kind, t.shop, t.l2, t.l3), [d.lbl_key, t.lbl]) END
           AS labels,
       t.s AS value
FROM totals t JOIN metric_def d USING (metric)
WHERE d.mtype = 'counter' AND d.exported

UNION ALL   -- histogram buckets (cumulative), +Inf
SELECT metric_prefix(h.kind) || h.metric || '_bucket',
       list_append(series_labels(h.kind, h.shop, h.l2, h.l3),
                   ['le', CASE WHEN b.i <= len(h.bounds)
                               THEN CAST(CAST(h.bounds[b.i] / h.div AS DOUBLE) AS VARCHAR)
                               ELSE '+Inf' END]),
       CAST(count(*) FILTER (WHERE h.bucket <= b.i) AS DOUBLE)
FROM hist_items h
CROSS JOIN LATERAL (SELECT unnest(range(1, len(h.bounds) + 2)) AS i) b
GROUP BY h.metric, h.kind, h.shop, h.l2, h.l3, h.bounds, h.div, b.i

UNION ALL   -- histogram _sum and _count
SELECT metric_prefix(kind) || metric || '_sum', series_labels(kind, shop, l2, l3),
       sum(v) / any_value(div)
FROM hist_items GROUP BY metric, kind, shop, l2, l3
UNION ALL
SELECT metric_prefix(kind) || metric || '_count', series_labels(kind, shop, l2, l3),
       CAST(count(*) AS DOUBLE)
FROM hist_items GROUP BY metric, kind, shop, l2, l3

UNION ALL   -- window ratios and means
SELECT metric_prefix(kind) || name,
       list_append(series_labels(kind, shop, l2, l3), ['window', wname]),
       num / den
FROM wratio

UNION ALL   -- first-response tier shares (queue series, per window and tier)
SELECT metric_prefix(kind) || 'first_response_tier_ratio',
       list_concat(series_labels(kind, shop, l2, l3), [['window', wname], ['tier', tier]]),
       num / den
FROM wtier

UNION ALL   -- "cs_first_response_tier_target_seconds{channel, tier} exports the configured
            -- targets (for boards and alerts)": every channel of the tier config
SELECT 'cs_first_response_tier_target_seconds', [['channel', channel], ['tier', tier]],
       target_s
FROM tier_cfg

UNION ALL   -- window stats of the response and resolution histograms
SELECT metric_prefix(kind) || window_stat_name(metric),
       list_concat(series_labels(kind, shop, l2, l3), [['window', wname], ['stat', stat]]),
       value
FROM wquantile
UNION ALL
SELECT metric_prefix(kind) || window_stat_name(metric),
       list_concat(series_labels(kind, shop, l2, l3), [['window', wname], ['stat', 'avg']]),
       s / 1000.0 / n
FROM wagg
WHERE metric IN ('first_response_seconds', 'response_seconds', 'resolution_seconds')
  AND n > 0

UNION ALL   -- customers received today (agent and team series; 0 included), their ratios
SELECT metric_prefix(kind) || 'received_customers',
       list_append(series_labels(kind, shop, l2, l3), ['window', 'today']), received
FROM customer_today
UNION ALL
SELECT metric_prefix(kind) || 'customer_conversion_ratio',
       list_append(series_labels(kind, shop, l2, l3), ['window', 'today']), converted / received
FROM customer_today WHERE received > 0
UNION ALL
SELECT metric_prefix(kind) || 'customer_refund_ratio',
       list_append(series_labels(kind, shop, l2, l3), ['window', 'today']), refunded / converted
FROM customer_today WHERE converted > 0
UNION ALL   -- customers received today by local hour of the conversation's creation
SELECT metric_prefix(kind) || 'customers_received_by_hour',
       list_append(series_labels(kind, shop, l2, l3), ['hour', hour]), value
FROM customers_by_hour_today

UNION ALL   -- hourly volume (queue series, today)
SELECT 'cs_hourly_volume',
       list_concat(series_labels('q', shop, l2, l3),
                   [['hour', CAST(hour AS VARCHAR)], ['kind', vkind]]),
       value
FROM hourly_volume

UNION ALL   -- waiting now
SELECT metric_prefix(kind) || 'waiting_conversations', series_labels(kind, shop, l2, l3),
       CAST(waiting AS DOUBLE)
FROM waiting_gauges
UNION ALL
SELECT metric_prefix(kind) || 'oldest_waiting_seconds', series_labels(kind, shop, l2, l3),
       oldest
FROM waiting_gauges

UNION ALL   -- open sessions (every agent series)
SELECT 'cs_agent_open_sessions', series_labels('a', s.shop, s.l2, s.l3),
       CAST(coalesce(o.n, 0) AS DOUBLE)
FROM series s
LEFT JOIN open_sessions o ON o.shop = s.shop AND o.l2 = s.l2 AND o.l3 = s.l3
WHERE s.kind = 'a'

UNION ALL   -- max open sessions (every agent series and window)
SELECT 'cs_agent_max_open_sessions',
       list_append(series_labels('a', s.shop, s.l2, s.l3), ['window', w.wname]),
       CAST(coalesce(p.max_n, 0) AS DOUBLE)
FROM series s
JOIN win w ON w.shop = s.shop
LEFT JOIN presence_win p ON p.shop = s.shop AND p.team = s.l2 AND p.agent = s.l3
                        AND p.wname = w.wname
WHERE s.kind = 'a'

UNION ALL   -- handled conversations and forbidden-phrase uses (every agent series and window)
SELECT 'cs_agent_' || name, list_append(series_labels('a', shop, l2, l3), ['window', wname]),
       value
FROM agent_window_counts

UNION ALL   -- presence windows (series with an agent.status event)
SELECT 'cs_agent_online_rate_ratio',
       list_append(series_labels('a', p.shop, p.team, p.agent), ['window', p.wname]),
       p.online_ms / (p.last_online - p.first_online)
FROM presence_win p JOIN agent_now n USING (shop, team, agent)
WHERE p.last_online > p.first_online
UNION ALL
SELECT 'cs_agent_slot_utilisation_ratio',
       list_append(series_labels('a', p.shop, p.team, p.agent), ['window', p.wname]),
       p.slot_used / p.slot_all
FROM presence_win p JOIN agent_now n USING (shop, team, agent)
WHERE p.slot_all > 0

UNION ALL   -- presence today
SELECT 'cs_agent_online_today_seconds', series_labels('a', n.shop, n.team, n.agent),
       coalesce(p.online_ms, 0) / 1000.0
FROM agent_now n
LEFT JOIN presence_win p ON p.shop = n.shop AND p.team = n.team AND p.agent = n.agent
                        AND p.wname = 'today'
UNION ALL
SELECT 'cs_agent_logins_today', series_labels('a', shop, team, agent), CAST(logins AS DOUBLE)
FROM logins_today
UNION ALL
SELECT 'cs_agent_first_online_timestamp_seconds', series_labels('a', p.shop, p.team, p.agent),
       p.first_online / 1000.0
FROM presence_win p JOIN agent_now n USING (shop, team, agent)
WHERE p.wname = 'today' AND p.first_online IS NOT NULL
UNION ALL
SELECT 'cs_agent_last_online_timestamp_seconds', series_labels('a', p.shop, p.team, p.agent),
       p.last_online / 1000.0
FROM presence_win p JOIN agent_now n USING (shop, team, agent)
WHERE p.wname = 'today' AND p.first_online IS NOT NULL
UNION ALL
SELECT 'cs_agent_offline_during_shift_today_seconds',
       series_labels('a', p.shop, p.team, p.agent),
       ((p.last_online - p.first_online) - p.online_ms) / 1000.0
FROM presence_win p JOIN agent_now n USING (shop, team, agent)
WHERE p.wname = 'today' AND p.first_online IS NOT NULL

UNION ALL   -- presence now
SELECT 'cs_agent_online', series_labels('a', shop, team, agent),
       CASE WHEN online THEN 1.0 ELSE 0.0 END
FROM agent_now
UNION ALL
SELECT 'cs_agent_max_concurrency', series_labels('a', shop, team, agent), CAST(c AS DOUBLE)
FROM agent_now
UNION ALL
SELECT 'cs_agent_slot_utilisation_now_ratio', series_labels('a', shop, team, agent),
       least(open_n, c) / CAST(c AS DOUBLE)
FROM agent_now WHERE online

UNION ALL   -- shop
SELECT 'cs_peak_hour', [['shop', shop]], CASE WHEN is_peak THEN 1.0 ELSE 0.0 END FROM peak

UNION ALL   -- pipeline: "cs_events_processed_total{type} counts valid records (duplicates
            -- included), cs_events_rejected_total{reason} invalid ones,
            -- cs_events_duplicate_total, cs_events_late_total and
            -- cs_events_orphaned_total{type}"
SELECT 'cs_events_processed_total', [['type', type]], CAST(count(*) AS DOUBLE)
FROM ev GROUP BY type
UNION ALL
SELECT 'cs_events_rejected_total', [['reason', reason]], CAST(count(*) AS DOUBLE)
FROM raw_rejected GROUP BY reason
UNION ALL
SELECT 'cs_events_duplicate_total', [], CAST(count(*) FILTER (WHERE outcome = 'dup') AS DOUBLE)
FROM evx
UNION ALL
SELECT 'cs_events_late_total', [], CAST(count(*) FILTER (WHERE late) AS DOUBLE) FROM ev
UNION ALL
SELECT 'cs_events_orphaned_total', [['type', type]], CAST(count(*) AS DOUBLE)
FROM evx WHERE outcome = 'orphan' GROUP BY type
UNION ALL
SELECT 'cs_window_end_timestamp_seconds', [], now_s FROM params;

-- README "Exposition rules", the agent page's size (at 2,000 agents one page was 465,000 lines,
-- 47 MB; four fifths of it per-agent detail):
-- * agent durations: no buckets. "Per agent, durations are summaries": every cs_agent_*
--   histogram (first response, response, resolution, handle, CSAT, ...) has _sum and _count
--   only; queue and team histograms keep their buckets.
-- * agent windows: 60m, today. "Per agent, window gauges exist for windows 60m and today only
--   (every cs_agent_* family with a window label)"; queue and team series keep every window.
CREATE OR REPLACE MACRO label_value(labels, key) AS
    list_filter(labels, lambda kv: kv[1] = key)[1][2];

DELETE FROM samples
WHERE starts_with(name, 'cs_agent_')
  AND (ends_with(name, '_bucket')                                   -- agent durations
       OR label_value(labels, 'window') NOT IN ('60m', 'today'));   -- agent windows
                                                                    -- (no window label: kept)
