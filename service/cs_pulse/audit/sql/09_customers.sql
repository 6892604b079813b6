-- =====================================================================================
-- 09  Customer-level joins: first-contact resolution and conversion
-- =====================================================================================
-- README "Resolution (FCR)":
--   "A resolution is a close with resolved: true (cs_resolved_total, Q and A, at the close)."
--   "It is first-contact unless (a) an earlier resolution of the same conversation exists, or
--    (b) the conversation is reopened within 24 h after it, or (c) another conversation of the
--    same customer (same shop, customer as above) is created within 24 h after it (creation
--    time in [resolution, resolution + 24 h]). A resolution that is not first-contact is
--    counted once in cs_resolved_repeat_total, under the resolution's series and at the
--    resolution's time, as soon as that is known."

CREATE OR REPLACE TABLE resolutions AS
WITH r AS (
    SELECT
        iid, seq, eff, shop, customer, q, ch, tm, ag,
        row_number() OVER (PARTITION BY iid ORDER BY seq) > 1 AS earlier_resolution   -- (a)
    FROM ce
    WHERE closing AND resolved AND NOT synthetic
), reopened AS (                                                                   -- (b)
    SELECT DISTINCT r.iid, r.seq
    FROM r JOIN ce o ON o.iid = r.iid AND o.type = 'conversation.reopened' AND o.opening
                     AND o.seq > r.seq AND o.eff <= r.eff + 86400000
), again AS (                                                                      -- (c)
    SELECT DISTINCT r.iid, r.seq
    FROM r JOIN conv o ON o.shop = r.shop AND o.customer = r.customer AND o.iid <> r.iid
                       AND o.created BETWEEN r.eff AND r.eff + 86400000
)
SELECT
    r.*,
    r.earlier_resolution OR b.iid IS NOT NULL OR c.iid IS NOT NULL AS is_repeat
FROM r
LEFT JOIN reopened b ON b.iid = r.iid AND b.seq = r.seq
LEFT JOIN again c ON c.iid = r.iid AND c.seq = r.seq;

-- README "Conversion (询单转化) and orders":
--   "A conversation is served when its first wait is answered (the first answered wait of any
--    segment): cs_served_total, under Q_w and S of that wait, at the answer."
--   "An order.paid qualifies for a served conversation X if it was paid within
--    [served, served + 24 h] and either names X (conversation_id), or names no conversation and
--    is by X's customer (same shop)."
--   "An order naming a conversation the worker no longer knows qualifies for none."

CREATE OR REPLACE TABLE served AS
SELECT w.iid, c.shop, c.customer, w.ws_q, w.ws_ch, w.ans_eff, w.ans_agent, w.ans_tm
FROM waits w
JOIN conv c USING (iid)
WHERE w.outcome = 'answered'
QUALIFY row_number() OVER (PARTITION BY w.iid ORDER BY w.segno) = 1;

-- Orders that took effect (duplicates aside); outcome 'unknown' = names a conversation that is
-- not known at the order's time.
CREATE OR REPLACE TABLE orders AS
SELECT e.part, e.off, e.eff, e.shop_id AS shop, e.customer_id, e.conversation_id, e.amount,
       e.outcome, c.iid
FROM evx e
LEFT JOIN conv c ON e.outcome = 'apply' AND c.part = e.part AND c.cid = e.conversation_id
                 AND c.inst = e.inst
WHERE e.type = 'order.paid' AND e.outcome IN ('apply', 'unknown');

CREATE OR REPLACE TABLE order_match AS
SELECT s.iid, o.part, o.off, o.amount
FROM served s
JOIN orders o ON o.iid = s.iid
WHERE o.eff BETWEEN s.ans_eff AND s.ans_eff + 86400000
UNION ALL
SELECT s.iid, o.part, o.off, o.amount
FROM served s
JOIN orders o ON o.conversation_id IS NULL AND o.shop = s.shop AND o.customer_id = s.customer
WHERE o.eff BETWEEN s.ans_eff AND s.ans_eff + 86400000;
