-- =====================================================================================
-- 11  Counters, histograms and window aggregates
-- =====================================================================================
-- README "Time, order and lateness": "Counters and histograms are cumulative totals over all
-- items ever counted." / "A counted item is in a window when its count time ... is in it."
-- README "Exposition rules": "Histogram buckets (...): responses and waits 5, 10, 15, 20, 25,
-- 30, 40, 60, 90, 120, 180, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 43200, 86400,
-- 172800, 604800 s (...); handle 60, 120, 180, 300, 600, 900, 1800, 3600, 7200, 14400, 28800,
-- 86400 s."
-- CSAT: "cs_csat_score histogram (buckets 1–5)".

-- metric registry: type, extra label, unit divisor (ms → s), bucket bounds in item units
CREATE OR REPLACE TABLE metric_def AS
SELECT * FROM (VALUES
    ('queued',                      'counter',   NULL,      1.0, NULL, true),
    ('first_response_within',       'counter',   'tier',    1.0, NULL, true),
    ('first_response_seconds',      'histogram', NULL,      1000.0,
        [5000, 10000, 15000, 20000, 25000, 30000, 40000, 60000, 90000, 120000, 180000,
         300000, 600000, 900000, 1800000, 3600000, 7200000, 14400000, 28800000, 43200000,
         86400000, 172800000, 604800000], true),
    ('service_level_contacts',      'counter',   'outcome', 1.0, NULL, true),
    ('abandoned',                   'counter',   NULL,      1.0, NULL, true),
    ('short_abandoned',             'counter',   NULL,      1.0, NULL, true),
    ('abandon_wait_seconds',        'histogram', NULL,      1000.0,
        [5000, 10000, 15000, 20000, 25000, 30000, 40000, 60000, 90000, 120000, 180000,
         300000, 600000, 900000, 1800000, 3600000, 7200000, 14400000, 28800000, 43200000,
         86400000, 172800000, 604800000], true),
    ('messages',                    'counter',   'sender',  1.0, NULL, true),
    ('message_characters',          'counter',   'sender',  1.0, NULL, true),
    ('forbidden_phrases',           'counter',   NULL,      1.0, NULL, true),
    ('customer_messages_concluded', 'counter',   'outcome', 1.0, NULL, true),
    ('runs',                        'counter',   'outcome', 1.0, NULL, true),
    ('response_seconds',            'histogram', NULL,      1000.0,
        [5000, 10000, 15000, 20000, 25000, 30000, 40000, 60000, 90000, 120000, 180000,
         300000, 600000, 900000, 1800000, 3600000, 7200000, 14400000, 28800000, 43200000,
         86400000, 172800000, 604800000], true),
    ('conversations_ended',         'counter',   NULL,      1.0, NULL, true),
    ('conversations_replied',       'counter',   NULL,      1.0, NULL, true),
    ('handle_seconds',              'histogram', NULL,      1000.0,
        [60000, 120000, 180000, 300000, 600000, 900000, 1800000, 3600000, 7200000,
         14400000, 28800000, 86400000], true),
    ('conversations_handled',       'counter',   NULL,      1.0, NULL, true),
    ('resolved',                    'counter',   NULL,      1.0, NULL, true),
    ('resolved_repeat',             'counter',   NULL,      1.0, NULL, true),
    ('resolution_seconds',          'histogram', NULL,      1000.0,
        [5000, 10000, 15000, 20000, 25000, 30000, 40000, 60000, 90000, 120000, 180000,
         300000, 600000, 900000, 1800000, 3600000, 7200000, 14400000, 28800000, 43200000,
         86400000, 172800000, 604800000], true),
    ('conversations',               'counter',   NULL,      1.0, NULL, true),
    ('transferred',                 'counter',   NULL,      1.0, NULL, true),
    ('escalated',                   'counter',   NULL,      1.0, NULL, true),
    ('reopened',                    'counter',   NULL,      1.0, NULL, true),
    ('csat_score',                  'histogram', NULL,      1.0, [1, 2, 3, 4, 5], true),
    ('csat_satisfied',              'counter',   NULL,      1.0, NULL, true),
    ('csat_dissatisfied',           'counter',   NULL,      1.0, NULL, true),
    ('csat_dissatisfied_attitude',  'counter',   NULL,      1.0, NULL, true),
    ('csat_attitude',               'counter',   'attitude', 1.0, NULL, false),
    ('served',                      'counter',   NULL,      1.0, NULL, true),
    ('converted',                   'counter',   NULL,      1.0, NULL, true),
    ('attributed_gmv',              'counter',   NULL,      1.0, NULL, true),
    ('orders',                      'counter',   NULL,      1.0, NULL, true),
    ('orders_amount',               'counter',   NULL,      1.0, NULL, true),
    ('orders_attributed',           'counter',   NULL,      1.0, NULL, true),
    ('customers_received',          'counter',   NULL,      1.0, NULL, true),
    ('customers_converted',         'counter',   NULL,      1.0, NULL, true),
    ('customers_refunded',          'counter',   NULL,      1.0, NULL, true),
    ('customers_received_by_hour',  'counter',   'hour',    1.0, NULL, false),
    ('orders_credited',             'counter',   NULL,      1.0, NULL, true),
    ('orders_returned',             'counter',   'kind',    1.0, NULL, true),
    ('refunds',                     'counter',   'reason',  1.0, NULL, true),
    ('refunds_amount',              'counter',   NULL,      1.0, NULL, true),
    ('order_returns',               'counter',   'kind',    1.0, NULL, true)
) t(metric, mtype, lbl_key, div, bounds, exported);

CREATE OR REPLACE MACRO series_labels(kind, shop, l2, l3) AS
    CASE kind
        WHEN 'q' THEN [['shop', shop], ['queue', l2], ['channel', l3]]
        WHEN 'a' THEN [['shop', shop], ['team', l2], ['agent', l3]]
        WHEN 't' THEN [['shop', shop], ['team', l2]]
        ELSE [['shop', shop]]
    END;

-- README "Customers received ...": the team series are "exported with prefix cs_team_".
CREATE OR REPLACE MACRO metric_prefix(kind) AS
    CASE kind WHEN 'a' THEN 'cs_agent_' WHEN 't' THEN 'cs_team_' ELSE 'cs_' END;

-- Bucket index of each histogram item: the first bound b with v ≤ b (len(bounds)+1 = +Inf).
CREATE OR REPLACE TABLE hist_items AS
SELECT f.*, len(list_filter(d.bounds, lambda b: b < f.v)) + 1 AS bucket, d.bounds, d.div
FROM facts f JOIN metric_def d USING (metric)
WHERE d.mtype = 'histogram';

-- Totals per series and label (every item ever counted).
CREATE OR REPLACE TABLE totals AS
SELECT metric, kind, shop, l2, l3, lbl, count(*) AS n, sum(v) AS s
FROM facts
GROUP BY ALL;

-- Window aggregates: items whose count time is in [a, e].
CREATE OR REPLACE TABLE wfacts AS
SELECT f.*, w.wname
FROM facts f
JOIN win w ON w.shop = f.shop AND f.t BETWEEN w.a AND w.e;

CREATE OR REPLACE TABLE wagg AS
SELECT metric, kind, shop, l2, l3, lbl, wname, count(*) AS n, sum(v) AS s
FROM wfacts
GROUP BY ALL;

-- Window bucket counts of the response-time and resolution-time histograms (for the p50/p90
-- stats).
CREATE OR REPLACE TABLE wbuckets AS
SELECT f.metric, f.kind, f.shop, f.l2, f.l3, f.wname,
       len(list_filter(d.bounds, lambda b: b < f.v)) + 1 AS bucket, count(*) AS cnt
FROM wfacts f JOIN metric_def d USING (metric)
WHERE f.metric IN ('first_response_seconds', 'response_seconds', 'resolution_seconds')
GROUP BY ALL;
