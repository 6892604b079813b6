-- =====================================================================================
-- 05  Messages and runs
-- =====================================================================================
-- README "Messages, runs, replies":
--   "A customer message is to a human if it takes effect in an open segment and not in
--    self-service. A run is a maximal sequence of such messages with no human agent message
--    between them. A message (a run) is answered by the next human agent message of the
--    segment that takes effect after it; its response time (a run's: from its first message)
--    is that message − its time. A message or run still unanswered when its segment closes is
--    unanswered. Until then it is not counted (it shows as waiting)."
-- Self-service (README "Waits"): a bot-served segment from its start until its first
-- hand-off; the phone IVR likewise ("the VRU/IVR is self-service").

CREATE OR REPLACE TABLE segmsg AS
WITH m AS (
    SELECT
        e.*,
        s.close_seq,
        -- runs are separated by human agent messages: the number of them before the message
        sum(CASE WHEN e.is_agent_msg THEN 1 ELSE 0 END)
            OVER (PARTITION BY e.sid ORDER BY e.seq ROWS UNBOUNDED PRECEDING)      AS run_no,
        min(CASE WHEN e.is_agent_msg THEN e.seq END)
            OVER (PARTITION BY e.sid ORDER BY e.seq
                  ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING)                 AS next_agent_seq,
        (s.bot_served OR s.phone) AND (s.h_seq IS NULL OR e.seq < s.h_seq)          AS self_service
    FROM segev e
    JOIN seg s USING (sid)
)
SELECT * FROM m WHERE is_cust_msg AND NOT self_service;

-- Customer messages to a human, with their answer (or unanswered close).
CREATE OR REPLACE TABLE cmsg AS
SELECT
    m.sid, m.iid, m.seq, m.eff, m.run_no, m.shop,
    x.seq AS ans_seq, x.eff AS ans_eff, x.q AS ans_q, x.ch AS ans_ch,
    x.agent_id AS ans_agent, x.tm AS ans_tm,
    c.seq AS close_seq, c.eff AS close_eff, c.q AS close_q, c.ch AS close_ch,
    c.tm AS close_tm, c.ag AS close_ag,
    CASE WHEN x.seq IS NOT NULL THEN 'answered'
         WHEN c.seq IS NOT NULL THEN 'unanswered' END AS outcome
FROM segmsg m
LEFT JOIN segev x ON x.sid = m.sid AND x.seq = m.next_agent_seq
LEFT JOIN segev c ON c.sid = m.sid AND c.seq = m.close_seq;

-- Runs: first message time, the answer or the close.
CREATE OR REPLACE TABLE runs AS
SELECT
    sid, iid, run_no, shop,
    min(eff) AS first_eff,
    min(seq) AS first_seq,
    count(*) AS n_msgs,
    any_value(ans_seq) AS ans_seq, any_value(ans_eff) AS ans_eff, any_value(ans_q) AS ans_q,
    any_value(ans_ch) AS ans_ch, any_value(ans_agent) AS ans_agent, any_value(ans_tm) AS ans_tm,
    any_value(close_eff) AS close_eff, any_value(close_q) AS close_q,
    any_value(close_ch) AS close_ch, any_value(close_tm) AS close_tm,
    any_value(close_ag) AS close_ag,
    any_value(outcome) AS outcome
FROM cmsg
GROUP BY sid, iid, run_no, shop;
