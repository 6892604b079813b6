-- =====================================================================================
-- 09c  Customers received, after-sales events and their matches to paid orders
-- =====================================================================================
-- README "Customers received (接待数), conversion by customers, after-sales":
--   "An agent receives a customer on a local day (the shop's time zone) when it sends the
--    answer that serves a conversation of that customer (Conversion: the conversation's first
--    answered wait), under S of that answer. The customer is the conversation's customer key:
--    its shop and customer_id, or the conversation itself when it has none."
--   "A customer count belongs to a day, not an instant: its count time is the local midnight
--    that starts the day"
--   "After-sales events. order.refunded (order_id, amount, optional reason) and order.returned
--    (order_id, kind: return 退货 or exchange 换货, optional reason) are deduplicated and routed
--    like order.paid: through the conversation they name while it is known, else through their
--    customer_id; one that names a conversation no longer known matches nothing. Per shop, at
--    their time, every one that takes effect counts"
--   "An after-sales event matches a paid order (an order.paid that took effect and was handed
--    to conversion, i.e. not one naming an unknown conversation) with the same shop, the same
--    customer key (the customer of the conversation each names, else shop + customer_id; an
--    order naming X has X's customer) and the same order_id, paid at most 30 days before it
--    ([paid, paid + 30 d], inclusive)."
--
-- Deduplication and routing are those of order.paid (02_entities: the conversation named while
-- known, else the customer entity (shop_id, customer_id)): evx.outcome 'apply' = took effect
-- through a known conversation or through the customer; 'unknown' = names a conversation that
-- is not known at its time (takes effect for the per-shop counts, as an order.paid naming an
-- unknown conversation counts in cs_orders_total, but matches nothing); 'dup' = ignored.

-- The local midnight starting the local day of an instant: the same expression as the start
-- of the "today" window (08_windows), so a day's count time is in "today" exactly on that day.
CREATE OR REPLACE MACRO local_midnight(tz, t_ms) AS
    epoch_ms(timezone(tz, date_trunc('day', timezone(tz,
        make_timestamp(CAST(t_ms AS BIGINT) * 1000)::TIMESTAMPTZ))));

-- Customer key of a conversation instance: "its shop and customer_id, or the conversation
-- itself when it has none" (a new instance after expiry is another conversation).
CREATE OR REPLACE MACRO conv_customer_key(shop, customer, iid) AS
    coalesce('c|' || shop || '|' || customer, 'x|' || CAST(iid AS VARCHAR));

-- Paid orders handed to conversion ("not one naming an unknown conversation"): outcome 'apply'
-- (duplicates aside).  Customer key: "the customer of the conversation each names, else
-- shop + customer_id; an order naming X has X's customer".
CREATE OR REPLACE TABLE paid_orders AS
SELECT
    o.part, o.off, o.eff, o.shop, e.order_id,
    CASE WHEN o.iid IS NOT NULL THEN conv_customer_key(c.shop, c.customer, c.iid)
         ELSE 'c|' || o.shop || '|' || o.customer_id END AS ckey
FROM orders o
JOIN ev e ON e.part = o.part AND e.off = o.off
LEFT JOIN conv c ON c.iid = o.iid
WHERE o.outcome = 'apply';

-- After-sales events that took effect.  "reason normalised: quality, not_as_described,
-- damaged, wrong_item, late_delivery, changed_mind, anything else or none → other" (read
-- literally: the exact strings; any other spelling, e.g. "Quality", is "anything else").
-- ckey NULL: names a conversation no longer known ("matches nothing").
CREATE OR REPLACE TABLE after_sales AS
SELECT
    e.part, e.off, e.eff, e.type, e.shop_id AS shop, e.order_id, e.amount, e.outcome,
    CASE WHEN e.reason IN ('quality', 'not_as_described', 'damaged', 'wrong_item',
                           'late_delivery', 'changed_mind')
         THEN e.reason ELSE 'other' END                           AS reason,
    e.return_kind,
    CASE WHEN e.outcome <> 'apply' THEN NULL
         WHEN e.conversation_id IS NOT NULL THEN conv_customer_key(c.shop, c.customer, c.iid)
         ELSE 'c|' || e.shop_id || '|' || e.customer_id END      AS ckey
FROM evx e
LEFT JOIN conv c ON e.outcome = 'apply' AND c.part = e.part AND c.cid = e.conversation_id
                 AND c.inst = e.inst
WHERE e.type IN ('order.refunded', 'order.returned') AND e.outcome IN ('apply', 'unknown');

-- Matches: same shop (the events' shop_id), same customer key, same order_id, the after-sales
-- event's time in [paid, paid + 30 d] (effective times, inclusive).  "Same shop" is read as the
-- two events' shop_id; the customer key carries its own shop (the named conversation's, else
-- the event's), so both must agree.
CREATE OR REPLACE TABLE after_sales_match AS
SELECT a.part AS a_part, a.off AS a_off, a.type, a.return_kind, p.part, p.off
FROM after_sales a
JOIN paid_orders p ON p.shop = a.shop AND p.ckey = a.ckey AND p.order_id = a.order_id
                  AND a.eff BETWEEN p.eff AND p.eff + 2592000000;

-- "Credited orders. Each (served conversation X, qualifying order) pair is counted once in
--  cs_orders_credited_total (Q_w and S of X, at X's served time, like the GMV). A pair is
--  returned when an order.returned of kind return matches its order, exchanged for kind
--  exchange"; a pair's order is refunded when an order.refunded matches it (for "Refunded").
-- order_match (09_customers) holds each (X, qualifying order) pair once.
CREATE OR REPLACE TABLE credited AS
SELECT
    s.iid, s.shop, s.ws_q, s.ws_ch, s.ans_eff, s.ans_agent, s.ans_tm, m.part, m.off,
    EXISTS (SELECT 1 FROM after_sales_match x WHERE x.part = m.part AND x.off = m.off
            AND x.type = 'order.returned' AND x.return_kind = 'return')   AS returned,
    EXISTS (SELECT 1 FROM after_sales_match x WHERE x.part = m.part AND x.off = m.off
            AND x.type = 'order.returned' AND x.return_kind = 'exchange') AS exchanged,
    EXISTS (SELECT 1 FROM after_sales_match x WHERE x.part = m.part AND x.off = m.off
            AND x.type = 'order.refunded')                                AS refunded
FROM order_match m
JOIN served s USING (iid);

-- One row per served conversation: the serving answer's S (shop, team, agent), the customer
-- key, the local day of the serving answer (as its midnight), the local hour of the
-- conversation's creation ("By hour ... local hour of the creation of a conversation through
-- which it was received that day": read literally, the creation hour even when the creation
-- was on an earlier local day than the serving answer), whether it converted (an order
-- qualifies) and whether an order that qualifies for it was matched by an order.refunded.
-- (Named cust_reception: the scorecard creates its own temp table "receptions".)
CREATE OR REPLACE TABLE cust_reception AS
SELECT
    s.iid, s.shop, s.ans_tm AS team, s.ans_agent AS agent,
    conv_customer_key(s.shop, s.customer, s.iid)                          AS ckey,
    local_midnight(c.tz, s.ans_eff)                                       AS day_t,
    local_hour(c.tz, v.created)                                           AS hour,
    EXISTS (SELECT 1 FROM order_match m WHERE m.iid = s.iid)              AS converted,
    EXISTS (SELECT 1 FROM credited k WHERE k.iid = s.iid AND k.refunded)  AS refunded
FROM served s
JOIN conv v USING (iid)
JOIN shop_cal c ON c.shop = s.shop;
