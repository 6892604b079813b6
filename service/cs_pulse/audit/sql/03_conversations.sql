-- =====================================================================================
-- 03  Conversation instances: events in order, labels, status and segments
-- =====================================================================================
-- README "Conversations":
--   "Expiry. A conversation's deadline is 25 h after its last event if it is closed, 7 days
--    after it if it is open ... At its deadline it is forgotten; an open one is first closed by
--    timeout then, exactly as if a conversation.closed {closed_by: timeout, resolved: false}
--    had taken effect at that instant. ... at a reading at now, a conversation whose deadline
--    is before now has expired, whether or not its partition's watermark moved — it is neither
--    waiting, nor holding a session, nor using a slot."
--   "Attributes. shop and customer come from the creating event (customer may be absent).
--    channel is the first non-empty channel among its events. queue is the queue (for
--    conversation.transferred: to_queue if given, else queue) of the latest event that carried
--    one; team likewise (to_team, else team). The agent is set by conversation.assigned
--    (agent_id), by conversation.transferred (to_agent_id; a transfer without to_agent_id leaves
--    the conversation unassigned), and by a human agent message while the conversation has no
--    agent (its agent_id). Labels apply from the event that sets them on."
--   "Status and segments. A conversation is open from creation until a close
--    (conversation.closed, conversation.abandoned, or expiry). conversation.reopened on a
--    closed conversation opens it again. Each open period is a segment. A close on a closed
--    conversation and a reopen of an open one have no effect (other than labels)."

-- Timeout closes, at the deadline (last event + 7 d) whatever expired it: an open instance
-- expired before a later event of its id (the walk saw the gap, or a release clock past the
-- deadline in between), or by the reading (its deadline before the latest of the partition's
-- final watermark, the clocks of the releases after its last event, and now: cw_final).
CREATE OR REPLACE TABLE timeout_close AS
SELECT part, cid, exp_inst AS inst, exp_last + 604800000 AS eff
FROM cw WHERE exp_inst IS NOT NULL AND exp_open
UNION ALL
SELECT part, cid, inst, last_eff + 604800000 AS eff
FROM cw_final WHERE expired AND is_open;

-- ce0: the events that took effect on an instance, plus the synthetic timeout closes.
CREATE OR REPLACE TABLE ce0 AS
SELECT
    e.part, e.conversation_id AS cid, e.inst, e.off, e.eff, e.type, e.event_id, e.shop_id,
    e.customer_id, e.channel, e.queue, e.team, e.agent_id, e.to_agent_id, e.to_queue,
    e.to_team, e.sender, e.chars, e.resolved, e.closed_by, e.score, e.scale, e.scale_min,
    e.attitude, e.violations,
    false AS synthetic
FROM evx e
WHERE e.outcome IN ('new', 'apply') AND e.conversation_id IS NOT NULL
  AND e.type NOT LIKE 'order.%' AND e.type NOT LIKE 'agent.%'
UNION ALL
SELECT
    t.part, t.cid, t.inst, 9223372036854775807 AS off, t.eff, 'conversation.closed', NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, false, 'timeout',
    NULL, NULL, NULL, NULL, NULL,
    true
FROM timeout_close t;

-- Instance ids and order of events within an instance.
CREATE OR REPLACE TABLE ce1 AS
SELECT
    dense_rank() OVER (ORDER BY part, cid, inst) AS iid,
    row_number() OVER (PARTITION BY part, cid, inst ORDER BY eff, off) AS seq,
    *
FROM ce0;

-- Labels (after applying each event: "labels apply from the event that sets them on").
CREATE OR REPLACE TABLE ce2 AS
SELECT
    *,
    first_value(shop_id) OVER w_all                                   AS shop,
    first_value(customer_id) OVER w_all                               AS customer,
    coalesce(first_value(channel IGNORE NULLS) OVER w_run, '')        AS ch,
    coalesce(last_value(CASE WHEN type = 'conversation.transferred'
                             THEN coalesce(to_queue, queue) ELSE queue END
                        IGNORE NULLS) OVER w_run, '')                 AS q,
    coalesce(last_value(CASE WHEN type = 'conversation.transferred'
                             THEN coalesce(to_team, team) ELSE team END
                        IGNORE NULLS) OVER w_run, '')                 AS tm,
    sum(CASE WHEN type IN ('conversation.assigned', 'conversation.transferred')
             THEN 1 ELSE 0 END) OVER w_run                            AS setter_grp,
    CASE WHEN type = 'conversation.assigned' THEN agent_id
         WHEN type = 'conversation.transferred' THEN to_agent_id END  AS setter_val,
    type = 'message.sent' AND sender = 'agent'                        AS is_agent_msg,
    type = 'message.sent' AND sender = 'customer'                     AS is_cust_msg,
    type = 'message.sent' AND sender = 'bot'                          AS is_bot_msg,
    -- "Status": open from creation; a reopen opens a closed one; a close closes an open one.
    CASE WHEN type = 'conversation.reopened' THEN 1
         WHEN type IN ('conversation.closed', 'conversation.abandoned') THEN 0 END AS st_chg
FROM ce1
WINDOW w_all AS (PARTITION BY iid ORDER BY seq
                 ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING),
       w_run AS (PARTITION BY iid ORDER BY seq ROWS UNBOUNDED PRECEDING);

CREATE OR REPLACE TABLE ce3 AS
SELECT
    *,
    -- agent: the last setter's value, or else the first human agent message since it
    coalesce(first_value(setter_val) OVER w_grp,
             first_value(CASE WHEN is_agent_msg THEN agent_id END IGNORE NULLS) OVER w_grp_run)
        AS ag,
    -- open status before this event (the creating event finds it not open)
    CASE WHEN seq = 1 THEN false
         ELSE coalesce(last_value(st_chg IGNORE NULLS) OVER w_before, 1) = 1 END AS open_before
FROM ce2
WINDOW w_grp AS (PARTITION BY iid, setter_grp ORDER BY seq
                 ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING),
       w_grp_run AS (PARTITION BY iid, setter_grp ORDER BY seq ROWS UNBOUNDED PRECEDING),
       w_before AS (PARTITION BY iid ORDER BY seq
                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING);

-- ce: conversation events with labels, status and segment.
--   opening: creation or an effective reopen; closing: an effective close (incl. timeout)
--   segno: the open period the event belongs to (NULL while closed)
CREATE OR REPLACE TABLE ce AS
WITH s AS (
    SELECT
        *,
        seq = 1 OR (type = 'conversation.reopened' AND NOT open_before)          AS opening,
        open_before AND type IN ('conversation.closed', 'conversation.abandoned') AS closing
    FROM ce3
)
SELECT
    * EXCLUDE (setter_grp, setter_val, st_chg),
    CASE WHEN opening OR open_before
         THEN sum(CASE WHEN opening THEN 1 ELSE 0 END)
                  OVER (PARTITION BY iid ORDER BY seq ROWS UNBOUNDED PRECEDING) END AS segno,
    is_agent_msg OR type IN ('conversation.queued', 'conversation.assigned',
                             'conversation.transferred')                     AS is_handoff
FROM s;

-- One row per conversation instance: creation and attributes.
CREATE OR REPLACE TABLE conv AS
SELECT
    iid, part, cid, inst,
    min(eff)                                            AS created,
    arg_min(shop, seq)                                  AS shop,
    arg_min(customer, seq)                              AS customer,
    arg_min(q, seq)                                     AS q0,
    arg_min(ch, seq)                                    AS ch0,
    bool_or(type = 'conversation.transferred')          AS transferred,
    bool_or(type = 'conversation.escalated')            AS escalated,
    arg_max(q, seq)                                     AS q_now,
    arg_max(ch, seq)                                    AS ch_now,
    arg_max(tm, seq)                                    AS tm_now,
    nullif(arg_max(coalesce(ag, ''), seq), '')          AS ag_now,   -- arg_max skips NULLs
    arg_max(CASE WHEN closing THEN false WHEN opening THEN true
                 ELSE open_before END, seq)             AS open_now
FROM ce
GROUP BY iid, part, cid, inst;
