-- =====================================================================================
-- 04  Segments and waits
-- =====================================================================================
-- README "Waits (first response, abandonment, service level)":
--   "A hand-off is conversation.queued, conversation.assigned, conversation.transferred or a
--    human agent message. A segment is bot-served if a bot message takes effect in it before
--    its first hand-off; it is in self-service from its start until that hand-off."
--   "Wait start (at most one per segment):
--      channel phone (no customer messages; the VRU/IVR is self-service): the segment's first
--        hand-off;
--      bot-served segment: its first hand-off if a customer message took effect before it,
--        otherwise the first customer message after the hand-off;
--      otherwise: the segment's first customer message.
--    Time in self-service is never waiting; an agent message before the wait start does not
--    answer."
--   "The wait is answered by the first human agent message that takes effect after the wait
--    start, or that is itself the hand-off starting it. First response time = that message −
--    wait start."
--   "The wait is abandoned if the segment is closed before it is answered by
--    conversation.abandoned, by conversation.closed with closed_by customer, timeout or
--    system, or by expiry; abandon wait = close − wait start; short if < 5 s. Closed before an
--    answer in any other way (agent, bot): the wait is closed unanswered."

-- segev: the events of each open period (the opening event through the closing event).
CREATE OR REPLACE TABLE segev AS
SELECT
    iid * 1000000 + segno AS sid,
    *,
    min(CASE WHEN is_handoff THEN seq END) OVER (PARTITION BY iid, segno) AS h_seq
FROM ce
WHERE segno IS NOT NULL;

CREATE OR REPLACE TABLE seg AS
WITH a AS (
    SELECT
        sid, iid, segno,
        min(seq)                                                        AS start_seq,
        min(eff)                                                        AS start_eff,
        any_value(h_seq)                                                AS h_seq,
        -- phone: the channel as of the first hand-off (else as of the segment's last event)
        coalesce(arg_min(ch, seq) FILTER (WHERE is_handoff), arg_max(ch, seq)) = 'phone'
                                                                        AS phone,
        coalesce(bool_or(is_bot_msg AND (h_seq IS NULL OR seq < h_seq)), false)
                                                                        AS bot_served,
        coalesce(bool_or(is_cust_msg AND seq < h_seq), false)           AS cust_before_h,
        min(CASE WHEN is_cust_msg THEN seq END)                         AS first_cust_seq,
        min(CASE WHEN is_cust_msg AND seq > h_seq THEN seq END)         AS first_cust_after_h,
        max(CASE WHEN closing THEN seq END)                             AS close_seq
    FROM segev
    GROUP BY sid, iid, segno
)
SELECT
    *,
    CASE
        WHEN phone THEN h_seq
        WHEN bot_served THEN CASE WHEN h_seq IS NULL THEN NULL
                                  WHEN cust_before_h THEN h_seq
                                  ELSE first_cust_after_h END
        ELSE first_cust_seq
    END AS ws_seq
FROM a;

-- waits: one row per wait start, with its answer and its close.
CREATE OR REPLACE TABLE waits AS
WITH ans AS (
    SELECT s.sid, min(e.seq) AS ans_seq
    FROM seg s JOIN segev e ON e.sid = s.sid AND e.is_agent_msg AND e.seq >= s.ws_seq
    WHERE s.ws_seq IS NOT NULL
    GROUP BY s.sid
)
SELECT
    s.sid, s.iid, s.segno,
    w.shop, w.q AS ws_q, w.ch AS ws_ch, w.eff AS ws_eff, w.seq AS ws_seq,
    -- answer: Q at the answer is not needed (waits count under Q_w); S = the sender
    x.seq AS ans_seq, x.eff AS ans_eff, x.agent_id AS ans_agent, x.tm AS ans_tm,
    c.seq AS close_seq, c.eff AS close_eff,
    CASE
        WHEN x.seq IS NOT NULL THEN 'answered'
        WHEN c.seq IS NOT NULL AND (c.type = 'conversation.abandoned'
                                    OR c.closed_by IN ('customer', 'timeout', 'system'))
            THEN 'abandoned'
        WHEN c.seq IS NOT NULL THEN 'closed_unanswered'
        ELSE 'waiting'
    END AS outcome
FROM seg s
JOIN segev w ON w.sid = s.sid AND w.seq = s.ws_seq
LEFT JOIN ans a ON a.sid = s.sid
LEFT JOIN segev x ON x.sid = s.sid AND x.seq = a.ans_seq
LEFT JOIN segev c ON c.sid = s.sid AND c.seq = s.close_seq;
