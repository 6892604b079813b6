-- =====================================================================================
-- 10  One view per metric family: the counted items
-- =====================================================================================
-- Every view yields items (metric, kind, shop, l2, l3, lbl, t, v):
--   kind 'q' queue series (l2 = queue, l3 = channel), 'a' agent series (l2 = team,
--   l3 = agent), 't' team series (l2 = team, l3 = ''), 's' shop; lbl the extra label value ('' when none); t the count time (ms);
--   v the value (1 for a count; ms for durations; chars; amounts; normalised scores).
-- README "Conversations / Series": "Q below is the queue series and A the agent series of the
-- conversation's current agent at the event that causes the fact; S is the agent series of
-- the sender of the human agent message that causes it (team = the conversation's team)."
-- Facts "under Q and A" go only under Q when the conversation has no agent.

-- ---------------------------------------------------------------- waits ----------------------
-- "cs_queued_total (waits) | every settled wait: Q_w | wait start"
CREATE OR REPLACE VIEW m_queued AS
SELECT 'queued' AS metric, 'q' AS kind, shop, ws_q AS l2, ws_ch AS l3, '' AS lbl,
       ws_eff AS t, 1.0 AS v
FROM waits WHERE outcome <> 'waiting';

-- "cs_first_response_seconds histogram | answered: Q_w and S | answer"
-- "First response time = that message − wait start."
CREATE OR REPLACE VIEW m_first_response_seconds AS
SELECT 'first_response_seconds' AS metric, 'q' AS kind, shop, ws_q AS l2, ws_ch AS l3,
       '' AS lbl, ans_eff AS t, CAST(ans_eff - ws_eff AS DOUBLE) AS v
FROM waits WHERE outcome = 'answered'
UNION ALL
SELECT 'first_response_seconds', 'a', shop, ans_tm, ans_agent, '', ans_eff,
       CAST(ans_eff - ws_eff AS DOUBLE)
FROM waits WHERE outcome = 'answered';

-- "First response against channel tiers": "Every answered wait (the ones in
-- cs_first_response_seconds) is classified under Q_w at the answer time: it is within a tier
-- if its tier time ≤ the tier's target."  "cs_first_response_within_total{shop, queue,
-- channel, tier} counts the answered waits within each tier (queue series only)".
-- One item per answered wait and tier, v = 1 when within and 0 otherwise: the counter is the
-- sum of v (so every tier is exported, 0 included, as soon as the series has an answered
-- wait) and a window's item count is its answered waits (the tier ratio's denominator).
CREATE OR REPLACE VIEW m_first_response_within AS
SELECT 'first_response_within' AS metric, 'q' AS kind, f.shop, f.ws_q AS l2, f.ws_ch AS l3,
       c.tier AS lbl, f.ans_eff AS t,
       CASE WHEN f.tier_ms <= c.target_s * 1000.0 THEN 1.0 ELSE 0.0 END AS v
FROM fr_tier_time f
JOIN tier_cfg c ON c.channel = f.cfg_ch;

-- "cs_service_level_contacts_total{outcome} | answered_within (≤ 30 s) / answered_after: Q_w
--  and S; abandoned_within (short) / abandoned_after: Q_w | answer / close"
CREATE OR REPLACE VIEW m_service_level_contacts AS
SELECT 'service_level_contacts' AS metric, 'q' AS kind, shop, ws_q AS l2, ws_ch AS l3,
       CASE WHEN ans_eff - ws_eff <= 30000 THEN 'answered_within' ELSE 'answered_after' END
           AS lbl,
       ans_eff AS t, 1.0 AS v
FROM waits WHERE outcome = 'answered'
UNION ALL
SELECT 'service_level_contacts', 'a', shop, ans_tm, ans_agent,
       CASE WHEN ans_eff - ws_eff <= 30000 THEN 'answered_within' ELSE 'answered_after' END,
       ans_eff, 1.0
FROM waits WHERE outcome = 'answered'
UNION ALL
SELECT 'service_level_contacts', 'q', shop, ws_q, ws_ch,
       CASE WHEN close_eff - ws_eff < 5000 THEN 'abandoned_within' ELSE 'abandoned_after' END,
       close_eff, 1.0
FROM waits WHERE outcome = 'abandoned';

-- "cs_abandoned_total, cs_short_abandoned_total | abandoned: Q_w | wait start"
-- "abandon wait = close − wait start; short if < 5 s"
CREATE OR REPLACE VIEW m_abandoned AS
SELECT 'abandoned' AS metric, 'q' AS kind, shop, ws_q AS l2, ws_ch AS l3, '' AS lbl,
       ws_eff AS t, 1.0 AS v
FROM waits WHERE outcome = 'abandoned';

CREATE OR REPLACE VIEW m_short_abandoned AS
SELECT 'short_abandoned' AS metric, 'q' AS kind, shop, ws_q AS l2, ws_ch AS l3, '' AS lbl,
       ws_eff AS t, 1.0 AS v
FROM waits WHERE outcome = 'abandoned' AND close_eff - ws_eff < 5000;

-- "cs_abandon_wait_seconds histogram | abandoned: Q_w | close"
CREATE OR REPLACE VIEW m_abandon_wait_seconds AS
SELECT 'abandon_wait_seconds' AS metric, 'q' AS kind, shop, ws_q AS l2, ws_ch AS l3,
       '' AS lbl, close_eff AS t, CAST(close_eff - ws_eff AS DOUBLE) AS v
FROM waits WHERE outcome = 'abandoned';

-- ---------------------------------------------------------------- messages -------------------
-- "cs_messages_total{sender} and cs_message_characters_total{sender} (chars) count every
--  message at its time: customer and bot under Q; agent under Q and S."
CREATE OR REPLACE VIEW m_messages AS
SELECT 'messages' AS metric, 'q' AS kind, shop, q AS l2, ch AS l3, sender AS lbl, eff AS t,
       1.0 AS v
FROM ce WHERE type = 'message.sent'
UNION ALL
SELECT 'messages', 'a', shop, tm, agent_id, sender, eff, 1.0
FROM ce WHERE type = 'message.sent' AND sender = 'agent';

CREATE OR REPLACE VIEW m_message_characters AS
SELECT 'message_characters' AS metric, 'q' AS kind, shop, q AS l2, ch AS l3, sender AS lbl,
       eff AS t, CAST(chars AS DOUBLE) AS v
FROM ce WHERE type = 'message.sent'
UNION ALL
SELECT 'message_characters', 'a', shop, tm, agent_id, sender, eff, CAST(chars AS DOUBLE)
FROM ce WHERE type = 'message.sent' AND sender = 'agent';

-- README "Forbidden phrases (违规用语)": "cs_forbidden_phrases_total (Q) and
--  cs_agent_forbidden_phrases_total (S) sum violations of agent messages at their time;
--  cs_agent_forbidden_phrase_uses{window} is the sum in each window and today."
-- "violations (integer ≥ 0, default 0)"; the message's text is never read (the glue drops it).
-- One item per agent message, v = its violations: like cs_message_characters_total (a sum over
-- messages), the counter exists once the series has an agent message, 0 included.
CREATE OR REPLACE VIEW m_forbidden_phrases AS
SELECT 'forbidden_phrases' AS metric, 'q' AS kind, shop, q AS l2, ch AS l3, '' AS lbl,
       eff AS t, CAST(coalesce(violations, 0) AS DOUBLE) AS v
FROM ce WHERE type = 'message.sent' AND sender = 'agent'
UNION ALL
SELECT 'forbidden_phrases', 'a', shop, tm, agent_id, '', eff,
       CAST(coalesce(violations, 0) AS DOUBLE)
FROM ce WHERE type = 'message.sent' AND sender = 'agent';

-- "..._concluded_total{outcome="answered"}, cs_runs_total{outcome="answered"},
--  cs_response_seconds | Q and S | the answer"
-- "..._concluded_total{outcome="unanswered"}, cs_runs_total{outcome="unanswered"} | Q and A |
--  the close"
CREATE OR REPLACE VIEW m_customer_messages_concluded AS
SELECT 'customer_messages_concluded' AS metric, 'q' AS kind, shop, ans_q AS l2, ans_ch AS l3,
       'answered' AS lbl, ans_eff AS t, 1.0 AS v
FROM cmsg WHERE outcome = 'answered'
UNION ALL
SELECT 'customer_messages_concluded', 'a', shop, ans_tm, ans_agent, 'answered', ans_eff, 1.0
FROM cmsg WHERE outcome = 'answered'
UNION ALL
SELECT 'customer_messages_concluded', 'q', shop, close_q, close_ch, 'unanswered', close_eff, 1.0
FROM cmsg WHERE outcome = 'unanswered'
UNION ALL
SELECT 'customer_messages_concluded', 'a', shop, close_tm, close_ag, 'unanswered', close_eff,
       1.0
FROM cmsg WHERE outcome = 'unanswered' AND close_ag IS NOT NULL;

CREATE OR REPLACE VIEW m_runs AS
SELECT 'runs' AS metric, 'q' AS kind, shop, ans_q AS l2, ans_ch AS l3, 'answered' AS lbl,
       ans_eff AS t, 1.0 AS v
FROM runs WHERE outcome = 'answered'
UNION ALL
SELECT 'runs', 'a', shop, ans_tm, ans_agent, 'answered', ans_eff, 1.0
FROM runs WHERE outcome = 'answered'
UNION ALL
SELECT 'runs', 'q', shop, close_q, close_ch, 'unanswered', close_eff, 1.0
FROM runs WHERE outcome = 'unanswered'
UNION ALL
SELECT 'runs', 'a', shop, close_tm, close_ag, 'unanswered', close_eff, 1.0
FROM runs WHERE outcome = 'unanswered' AND close_ag IS NOT NULL;

-- "its response time (a run's: from its first message) is that message − its time":
-- one observation per answered run.
CREATE OR REPLACE VIEW m_response_seconds AS
SELECT 'response_seconds' AS metric, 'q' AS kind, shop, ans_q AS l2, ans_ch AS l3, '' AS lbl,
       ans_eff AS t, CAST(ans_eff - first_eff AS DOUBLE) AS v
FROM runs WHERE outcome = 'answered'
UNION ALL
SELECT 'response_seconds', 'a', shop, ans_tm, ans_agent, '', ans_eff,
       CAST(ans_eff - first_eff AS DOUBLE)
FROM runs WHERE outcome = 'answered';

-- "cs_conversations_ended_total: each segment close, Q and A, at the close;
--  cs_conversations_replied_total: those whose segment had its wait answered or at least one
--  customer message answered."
CREATE OR REPLACE VIEW segment_close AS
SELECT
    s.sid, c.shop, c.q, c.ch, c.tm, c.ag, c.eff,
    coalesce(w.outcome = 'answered', false)
        OR EXISTS (SELECT 1 FROM cmsg m WHERE m.sid = s.sid AND m.outcome = 'answered')
        AS replied
FROM seg s
JOIN segev c ON c.sid = s.sid AND c.seq = s.close_seq
LEFT JOIN waits w ON w.sid = s.sid;

CREATE OR REPLACE VIEW m_conversations_ended AS
SELECT 'conversations_ended' AS metric, 'q' AS kind, shop, q AS l2, ch AS l3, '' AS lbl,
       eff AS t, 1.0 AS v
FROM segment_close
UNION ALL
SELECT 'conversations_ended', 'a', shop, tm, ag, '', eff, 1.0
FROM segment_close WHERE ag IS NOT NULL;

CREATE OR REPLACE VIEW m_conversations_replied AS
SELECT 'conversations_replied' AS metric, 'q' AS kind, shop, q AS l2, ch AS l3, '' AS lbl,
       eff AS t, 1.0 AS v
FROM segment_close WHERE replied
UNION ALL
SELECT 'conversations_replied', 'a', shop, tm, ag, '', eff, 1.0
FROM segment_close WHERE replied AND ag IS NOT NULL;

-- ---------------------------------------------------------------- handle time ----------------
-- "cs_handle_seconds on an agent series: each holding's length, at its end. On a queue series:
--  per segment, close − the segment's first holding start, under Q at the close (segments
--  never held are not counted)."
CREATE OR REPLACE VIEW m_handle_seconds AS
SELECT 'handle_seconds' AS metric, 'a' AS kind, shop, team AS l2, agent AS l3, '' AS lbl,
       end_eff AS t, CAST(end_eff - start_eff AS DOUBLE) AS v
FROM holdings WHERE end_eff IS NOT NULL
UNION ALL
SELECT 'handle_seconds', 'q', c.shop, c.q, c.ch, '', c.eff, CAST(c.eff - h.first_start AS DOUBLE)
FROM (SELECT sid, min(start_eff) AS first_start FROM holdings GROUP BY sid) h
JOIN seg s ON s.sid = h.sid
JOIN segev c ON c.sid = s.sid AND c.seq = s.close_seq;

-- README "Handled conversations": "An agent handles a conversation when it first holds it (see
--  Agents: sessions): cs_agent_conversations_handled_total counts each conversation once per
--  agent (a second holding by the same agent, after a transfer away and back or a reopen, does
--  not count again; a new conversation with the same id after expiry does), under that A at the
--  holding's start. cs_agent_handled_conversations{window} is the count in each window and
--  today."
-- "Once per agent": per conversation instance (iid: a new instance after expiry counts again)
-- and agent id; the first holding gives the series (its team) and the count time.
CREATE OR REPLACE VIEW m_conversations_handled AS
SELECT 'conversations_handled' AS metric, 'a' AS kind, shop, team AS l2, agent AS l3,
       '' AS lbl, start_eff AS t, 1.0 AS v
FROM holdings
QUALIFY row_number() OVER (PARTITION BY iid, agent ORDER BY start_eff, sid) = 1;

-- ---------------------------------------------------------------- resolution -----------------
-- "A resolution is a close with resolved: true (cs_resolved_total, Q and A, at the close)."
CREATE OR REPLACE VIEW m_resolved AS
SELECT 'resolved' AS metric, 'q' AS kind, shop, q AS l2, ch AS l3, '' AS lbl, eff AS t,
       1.0 AS v
FROM resolutions
UNION ALL
SELECT 'resolved', 'a', shop, tm, ag, '', eff, 1.0 FROM resolutions WHERE ag IS NOT NULL;

-- "A resolution that is not first-contact is counted once in cs_resolved_repeat_total, under
--  the resolution's series and at the resolution's time"
CREATE OR REPLACE VIEW m_resolved_repeat AS
SELECT 'resolved_repeat' AS metric, 'q' AS kind, shop, q AS l2, ch AS l3, '' AS lbl, eff AS t,
       1.0 AS v
FROM resolutions WHERE is_repeat
UNION ALL
SELECT 'resolved_repeat', 'a', shop, tm, ag, '', eff, 1.0
FROM resolutions WHERE is_repeat AND ag IS NOT NULL;

-- README "Resolution rate ...": "Time to resolution (cs_resolution_seconds histogram, buckets as
--  responses): for each resolution, the close − the start of its segment (the creation, or the
--  reopen that opened it), under Q and A at the close; cs_resolution_window_seconds{stat} like
--  the other window quantiles."
-- (cs_resolution_ratio = resolved / conversations_ended is a window ratio: 12_window_gauges.)
CREATE OR REPLACE VIEW resolution_time AS
SELECT r.shop, r.q, r.ch, r.tm, r.ag, r.eff, CAST(r.eff - s.start_eff AS DOUBLE) AS ms
FROM resolutions r
JOIN ce c ON c.iid = r.iid AND c.seq = r.seq
JOIN seg s ON s.iid = c.iid AND s.segno = c.segno;

CREATE OR REPLACE VIEW m_resolution_seconds AS
SELECT 'resolution_seconds' AS metric, 'q' AS kind, shop, q AS l2, ch AS l3, '' AS lbl,
       eff AS t, ms AS v
FROM resolution_time
UNION ALL
SELECT 'resolution_seconds', 'a', shop, tm, ag, '', eff, ms
FROM resolution_time WHERE ag IS NOT NULL;

-- ---------------------------------------------------------------- conversations -------------
-- "cs_conversations_total: each conversation at its creation, under Q at creation."
CREATE OR REPLACE VIEW m_conversations AS
SELECT 'conversations' AS metric, 'q' AS kind, shop, q0 AS l2, ch0 AS l3, '' AS lbl,
       created AS t, 1.0 AS v
FROM conv;

-- "cs_transferred_total, cs_escalated_total: conversations transferred (escalated) at least
--  once, counted at the creation time under the creation Q"
CREATE OR REPLACE VIEW m_transferred AS
SELECT 'transferred' AS metric, 'q' AS kind, shop, q0 AS l2, ch0 AS l3, '' AS lbl,
       created AS t, 1.0 AS v
FROM conv WHERE transferred;

CREATE OR REPLACE VIEW m_escalated AS
SELECT 'escalated' AS metric, 'q' AS kind, shop, q0 AS l2, ch0 AS l3, '' AS lbl,
       created AS t, 1.0 AS v
FROM conv WHERE escalated;

-- "cs_reopened_total: effective reopens, Q and A, at the reopen."
CREATE OR REPLACE VIEW m_reopened AS
SELECT 'reopened' AS metric, 'q' AS kind, shop, q AS l2, ch AS l3, '' AS lbl, eff AS t,
       1.0 AS v
FROM ce WHERE type = 'conversation.reopened' AND opening AND seq > 1
UNION ALL
SELECT 'reopened', 'a', shop, tm, ag, '', eff, 1.0
FROM ce WHERE type = 'conversation.reopened' AND opening AND seq > 1 AND ag IS NOT NULL;

-- ---------------------------------------------------------------- CSAT -----------------------
-- "CSAT: each satisfaction.rated of a known conversation, at its time, under Q and A (the agent
--  label stays after a close): normalised score 1 + 4 × (score − min) / (max − min) with
--  min = scale_min (default 1) and max = scale → cs_csat_score histogram (buckets 1–5),
--  cs_csat_mean_score, cs_csat_satisfied_total / cs_csat_satisfied_ratio (normalised ≥ 4, 好评),
--  cs_csat_dissatisfied_total / cs_csat_dissatisfied_ratio (≤ 2, 差评),
--  cs_attitude_positive_ratio = positive / ratings with an attitude."
CREATE OR REPLACE VIEW csat AS
SELECT shop, q, ch, tm, ag, eff, attitude,
       1 + 4 * (score - coalesce(scale_min, 1)) / (scale - coalesce(scale_min, 1)) AS norm
FROM ce
WHERE type = 'satisfaction.rated' AND scale <> coalesce(scale_min, 1);

CREATE OR REPLACE VIEW csat_items AS
SELECT 'q' AS kind, shop, q AS l2, ch AS l3, eff AS t, norm, attitude FROM csat
UNION ALL
SELECT 'a', shop, tm, ag, eff, norm, attitude FROM csat WHERE ag IS NOT NULL;

CREATE OR REPLACE VIEW m_csat_score AS
SELECT 'csat_score' AS metric, kind, shop, l2, l3, '' AS lbl, t, norm AS v FROM csat_items;

CREATE OR REPLACE VIEW m_csat_satisfied AS
SELECT 'csat_satisfied' AS metric, kind, shop, l2, l3, '' AS lbl, t, 1.0 AS v
FROM csat_items WHERE norm >= 4;

CREATE OR REPLACE VIEW m_csat_dissatisfied AS
SELECT 'csat_dissatisfied' AS metric, kind, shop, l2, l3, '' AS lbl, t, 1.0 AS v
FROM csat_items WHERE norm <= 2;

-- README "Reviews (差评 / 好评)": "cs_csat_dissatisfied_attitude_total counts the negative
--  ratings whose attitude is negative (the customer blames the agent's attitude), Q and A at
--  the rating."  Negative = normalised rating ≤ 2.
CREATE OR REPLACE VIEW m_csat_dissatisfied_attitude AS
SELECT 'csat_dissatisfied_attitude' AS metric, kind, shop, l2, l3, '' AS lbl, t, 1.0 AS v
FROM csat_items WHERE norm <= 2 AND attitude = 'negative';

-- (not exported as a counter: feeds cs_attitude_positive_ratio)
CREATE OR REPLACE VIEW m_csat_attitude AS
SELECT 'csat_attitude' AS metric, kind, shop, l2, l3, attitude AS lbl, t, 1.0 AS v
FROM csat_items WHERE attitude IS NOT NULL;

-- ---------------------------------------------------------------- conversion ----------------
-- "A conversation is served when its first wait is answered ...: cs_served_total, under Q_w and
--  S of that wait, at the answer."
CREATE OR REPLACE VIEW m_served AS
SELECT 'served' AS metric, 'q' AS kind, shop, ws_q AS l2, ws_ch AS l3, '' AS lbl,
       ans_eff AS t, 1.0 AS v
FROM served
UNION ALL
SELECT 'served', 'a', shop, ans_tm, ans_agent, '', ans_eff, 1.0 FROM served;

-- "X is converted if at least one order qualifies: cs_converted_total (once) and
--  cs_attributed_gmv_total (the sum of the amounts of every qualifying order), under X's served
--  series and at X's served time"
CREATE OR REPLACE VIEW converted AS
SELECT s.*, m.gmv
FROM served s
JOIN (SELECT iid, sum(amount) AS gmv FROM order_match GROUP BY iid) m USING (iid);

CREATE OR REPLACE VIEW m_converted AS
SELECT 'converted' AS metric, 'q' AS kind, shop, ws_q AS l2, ws_ch AS l3, '' AS lbl,
       ans_eff AS t, 1.0 AS v
FROM converted
UNION ALL
SELECT 'converted', 'a', shop, ans_tm, ans_agent, '', ans_eff, 1.0 FROM converted;

CREATE OR REPLACE VIEW m_attributed_gmv AS
SELECT 'attributed_gmv' AS metric, 'q' AS kind, shop, ws_q AS l2, ws_ch AS l3, '' AS lbl,
       ans_eff AS t, gmv AS v
FROM converted
UNION ALL
SELECT 'attributed_gmv', 'a', shop, ans_tm, ans_agent, '', ans_eff, gmv FROM converted;

-- "Per shop, at the order's time: cs_orders_total, cs_orders_amount_total, and
--  cs_orders_attributed_total (orders that qualify for at least one conversation)."
CREATE OR REPLACE VIEW m_orders AS
SELECT 'orders' AS metric, 's' AS kind, shop, '' AS l2, '' AS l3, '' AS lbl, eff AS t,
       1.0 AS v
FROM orders;

CREATE OR REPLACE VIEW m_orders_amount AS
SELECT 'orders_amount' AS metric, 's' AS kind, shop, '' AS l2, '' AS l3, '' AS lbl, eff AS t,
       amount AS v
FROM orders;

CREATE OR REPLACE VIEW m_orders_attributed AS
SELECT 'orders_attributed' AS metric, 's' AS kind, o.shop, '' AS l2, '' AS l3, '' AS lbl,
       o.eff AS t, 1.0 AS v
FROM orders o
WHERE EXISTS (SELECT 1 FROM order_match m WHERE m.part = o.part AND m.off = o.off);

-- ---------------------------------------------------------------- customers received --------
-- README "Customers received (接待数), conversion by customers, after-sales":
--   "Team series ("T": shop, team), for counts of distinct customers, which a sum over agents
--    cannot give: exported with prefix cs_team_. The T of an S is its shop and team."
--   Kind 't' below: l2 = team, l3 = '' (not a label).
--   "Received (接待数): a customer counts once per S and local day of the serving answer, and
--    once per T and day: cs_agent_customers_received_total, cs_team_customers_received_total.
--    ... its count time is the local midnight that starts the day"
--   "Converted by customers (咨询转换率): a received customer (series, day) is converted when at
--    least one conversation through which it was received that day, by that series, is
--    converted (Conversion); counted once, when first known, at the same midnight"
--   "Refunded (退款率): a converted received customer (series, day) is refunded when an
--    order.refunded matches an order that qualifies for one of those conversations (below);
--    counted once, at the same midnight"
-- Like converted and GMV (counted at the served time, known at the order's time), every count
-- goes to its day's midnight whenever the records that decide it took effect.
CREATE OR REPLACE VIEW reception_series AS
SELECT 'a' AS kind, shop, team AS l2, agent AS l3, ckey, day_t, hour, converted, refunded
FROM cust_reception
UNION ALL
SELECT 't', shop, team, '', ckey, day_t, hour, converted, refunded
FROM cust_reception;

CREATE OR REPLACE VIEW customer_day AS
SELECT kind, shop, l2, l3, ckey, day_t,
       bool_or(converted) AS converted,
       bool_or(converted AND refunded) AS refunded
FROM reception_series
GROUP BY kind, shop, l2, l3, ckey, day_t;

CREATE OR REPLACE VIEW m_customers_received AS
SELECT 'customers_received' AS metric, kind, shop, l2, l3, '' AS lbl, day_t AS t, 1.0 AS v
FROM customer_day;

CREATE OR REPLACE VIEW m_customers_converted AS
SELECT 'customers_converted' AS metric, kind, shop, l2, l3, '' AS lbl, day_t AS t, 1.0 AS v
FROM customer_day WHERE converted;

CREATE OR REPLACE VIEW m_customers_refunded AS
SELECT 'customers_refunded' AS metric, kind, shop, l2, l3, '' AS lbl, day_t AS t, 1.0 AS v
FROM customer_day WHERE refunded;

-- "By hour (分时接待): a customer counts once per series, local day of the serving answer and
--  local hour of the creation of a conversation through which it was received that day:
--  cs_agent_customers_received_by_hour{hour="0".."23"} (and cs_team_…) is today's count per
--  hour (count time: the day's midnight), exported for every hour with a count."
-- (not exported as a counter: feeds the by-hour gauge, 14_samples)
CREATE OR REPLACE VIEW m_customers_received_by_hour AS
SELECT DISTINCT 'customers_received_by_hour' AS metric, kind, shop, l2, l3,
       CAST(hour AS VARCHAR) AS lbl, day_t AS t, 1.0 AS v, ckey
FROM reception_series;

-- ---------------------------------------------------------------- after-sales ---------------
-- "Credited orders. Each (served conversation X, qualifying order) pair is counted once in
--  cs_orders_credited_total (Q_w and S of X, at X's served time, like the GMV). A pair is
--  returned when an order.returned of kind return matches its order, exchanged for kind
--  exchange: cs_orders_returned_total{kind="return|exchange"}, once per pair and kind, under
--  X's served series at X's served time."
CREATE OR REPLACE VIEW m_orders_credited AS
SELECT 'orders_credited' AS metric, 'q' AS kind, shop, ws_q AS l2, ws_ch AS l3, '' AS lbl,
       ans_eff AS t, 1.0 AS v
FROM credited
UNION ALL
SELECT 'orders_credited', 'a', shop, ans_tm, ans_agent, '', ans_eff, 1.0 FROM credited;

-- "(both kinds exported, 0 included, for every series with a cs_orders_credited_total)":
-- every credited pair adds 0 or 1 to each kind.
CREATE OR REPLACE VIEW m_orders_returned AS
SELECT 'orders_returned' AS metric, 'q' AS kind, shop, ws_q AS l2, ws_ch AS l3,
       'return' AS lbl, ans_eff AS t, CASE WHEN returned THEN 1.0 ELSE 0.0 END AS v
FROM credited
UNION ALL
SELECT 'orders_returned', 'a', shop, ans_tm, ans_agent, 'return', ans_eff,
       CASE WHEN returned THEN 1.0 ELSE 0.0 END
FROM credited
UNION ALL
SELECT 'orders_returned', 'q', shop, ws_q, ws_ch, 'exchange', ans_eff,
       CASE WHEN exchanged THEN 1.0 ELSE 0.0 END
FROM credited
UNION ALL
SELECT 'orders_returned', 'a', shop, ans_tm, ans_agent, 'exchange', ans_eff,
       CASE WHEN exchanged THEN 1.0 ELSE 0.0 END
FROM credited;

-- "Per shop, at their time, every one that takes effect counts: cs_refunds_total{reason}
--  (reason normalised ...), cs_refunds_amount_total, cs_order_returns_total{kind}."
CREATE OR REPLACE VIEW m_refunds AS
SELECT 'refunds' AS metric, 's' AS kind, shop, '' AS l2, '' AS l3, reason AS lbl, eff AS t,
       1.0 AS v
FROM after_sales WHERE type = 'order.refunded';

CREATE OR REPLACE VIEW m_refunds_amount AS
SELECT 'refunds_amount' AS metric, 's' AS kind, shop, '' AS l2, '' AS l3, '' AS lbl, eff AS t,
       amount AS v
FROM after_sales WHERE type = 'order.refunded';

CREATE OR REPLACE VIEW m_order_returns AS
SELECT 'order_returns' AS metric, 's' AS kind, shop, '' AS l2, '' AS l3, return_kind AS lbl,
       eff AS t, 1.0 AS v
FROM after_sales WHERE type = 'order.returned';

-- ---------------------------------------------------------------- all items -----------------
CREATE OR REPLACE TABLE facts AS
SELECT * FROM m_queued
UNION ALL SELECT * FROM m_first_response_seconds
UNION ALL SELECT * FROM m_first_response_within
UNION ALL SELECT * FROM m_service_level_contacts
UNION ALL SELECT * FROM m_abandoned
UNION ALL SELECT * FROM m_short_abandoned
UNION ALL SELECT * FROM m_abandon_wait_seconds
UNION ALL SELECT * FROM m_messages
UNION ALL SELECT * FROM m_message_characters
UNION ALL SELECT * FROM m_forbidden_phrases
UNION ALL SELECT * FROM m_customer_messages_concluded
UNION ALL SELECT * FROM m_runs
UNION ALL SELECT * FROM m_response_seconds
UNION ALL SELECT * FROM m_conversations_ended
UNION ALL SELECT * FROM m_conversations_replied
UNION ALL SELECT * FROM m_handle_seconds
UNION ALL SELECT * FROM m_conversations_handled
UNION ALL SELECT * FROM m_resolved
UNION ALL SELECT * FROM m_resolved_repeat
UNION ALL SELECT * FROM m_resolution_seconds
UNION ALL SELECT * FROM m_conversations
UNION ALL SELECT * FROM m_transferred
UNION ALL SELECT * FROM m_escalated
UNION ALL SELECT * FROM m_reopened
UNION ALL SELECT * FROM m_csat_score
UNION ALL SELECT * FROM m_csat_satisfied
UNION ALL SELECT * FROM m_csat_dissatisfied
UNION ALL SELECT * FROM m_csat_dissatisfied_attitude
UNION ALL SELECT * FROM m_csat_attitude
UNION ALL SELECT * FROM m_served
UNION ALL SELECT * FROM m_converted
UNION ALL SELECT * FROM m_attributed_gmv
UNION ALL SELECT * FROM m_orders
UNION ALL SELECT * FROM m_orders_amount
UNION ALL SELECT * FROM m_orders_attributed
UNION ALL SELECT * FROM m_customers_received
UNION ALL SELECT * FROM m_customers_converted
UNION ALL SELECT * FROM m_customers_refunded
UNION ALL SELECT * EXCLUDE (ckey) FROM m_customers_received_by_hour
UNION ALL SELECT * FROM m_orders_credited
UNION ALL SELECT * FROM m_orders_returned
UNION ALL SELECT * FROM m_refunds
UNION ALL SELECT * FROM m_refunds_amount
UNION ALL SELECT * FROM m_order_returns;
