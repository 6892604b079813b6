-- =====================================================================================
-- 02  Entities: conversation instances (creation, orphans, expiry), duplicates
-- =====================================================================================
-- README "Conversations":
--   "Creation. An event for a conversation with no current state creates it, if its type is
--    conversation.started|queued|assigned|transferred|escalated|reopened or message.sent. Any
--    other event for an unknown conversation (conversation.closed|abandoned,
--    satisfaction.rated) is an orphan: counted in cs_events_orphaned_total{type}, no other
--    effect. (order.* events are never orphans; see Conversion.)"
--   "Expiry. A closed conversation is forgotten when the partition's watermark passes 25 h
--    after its last event (the last that took effect, duplicates aside); an open one when the
--    watermark passes 7 days after its last event, and it is first closed by timeout at that
--    instant (last event + 7 d) ... The check is made before each event of the conversation
--    takes effect (gap from its last event > 25 h closed / > 7 d open) and, at a reading,
--    against the partition's watermark."
-- README "Time, order and lateness":
--   "Duplicates: an event whose event_id equals that of an event that already took effect for
--    the same entity — the conversation (conversation_id) for events that have one; otherwise
--    the agent (shop_id, agent_id) for agent.*, or the customer (shop_id, customer_id) for
--    order.* — is ignored entirely (cs_events_duplicate_total). A conversation remembers ids
--    while it is known (an orphan leaves nothing to remember); an agent or customer its last
--    2,000."
--
-- The conversation state is per (partition, conversation_id) and strictly sequential (the
-- expiry gap is measured from the last event that took effect, which depends on which events
-- were duplicates, which depends on the instance): a recursive walk, one step per event of
-- every conversation at once.  Orders naming a conversation take part in the walk (their
-- duplicate entity is that conversation) but are not events *of* the conversation: they
-- never create it, are never orphans and do not move its last-event time.

CREATE OR REPLACE TABLE cw_in AS
SELECT
    part, conversation_id AS cid, off, eff, type, event_id,
    row_number() OVER (PARTITION BY part, conversation_id ORDER BY eff, off) AS k
FROM ev
WHERE conversation_id IS NOT NULL
  AND (type LIKE 'conversation.%' OR type IN ('message.sent', 'satisfaction.rated')
       OR type LIKE 'order.%');

CREATE OR REPLACE TABLE cw AS
WITH RECURSIVE walk AS (
    -- seed: every conversation id starts unknown
    SELECT DISTINCT
        part, cid,
        CAST(0 AS BIGINT)      AS k,
        CAST(NULL AS BIGINT)   AS off,
        'seed'                 AS outcome,
        false                  AS known,
        CAST(0 AS BIGINT)      AS inst,
        false                  AS is_open,
        CAST(NULL AS BIGINT)   AS last_eff,
        CAST([] AS VARCHAR[])  AS ids,
        false                  AS open_before,
        CAST(NULL AS BIGINT)   AS exp_inst,
        CAST(NULL AS BOOLEAN)  AS exp_open,
        CAST(NULL AS BIGINT)   AS exp_last
    FROM cw_in
    UNION ALL
    SELECT
        part, cid, k, off, outcome,
        outcome IN ('new', 'apply', 'dup')                                   AS known,
        CASE WHEN outcome = 'new' THEN p_inst + 1 ELSE p_inst END            AS inst,
        CASE
            WHEN outcome = 'new' THEN true
            WHEN outcome = 'apply' AND type = 'conversation.reopened' THEN true
            WHEN outcome = 'apply'
                 AND type IN ('conversation.closed', 'conversation.abandoned') THEN false
            WHEN outcome IN ('apply', 'dup') THEN p_open
            ELSE false
        END                                                                  AS is_open,
        CASE
            WHEN outcome = 'new' THEN eff
            WHEN outcome = 'apply' THEN eff   -- any event that took effect, orders included
            WHEN outcome IN ('apply', 'dup') THEN p_last
        END                                                                  AS last_eff,
        CASE
            WHEN outcome = 'new' THEN [event_id]
            WHEN outcome = 'apply' THEN list_append(p_ids, event_id)
            WHEN outcome = 'dup' THEN p_ids
            ELSE CAST([] AS VARCHAR[])
        END                                                                  AS ids,
        kn AND p_open                                                        AS open_before,
        CASE WHEN expired THEN p_inst END                                    AS exp_inst,
        CASE WHEN expired THEN p_open END                                    AS exp_open,
        CASE WHEN expired THEN p_last END                                    AS exp_last
    FROM (
        SELECT
            *,
            CASE
                WHEN kn AND list_contains(p_ids, event_id) THEN 'dup'
                WHEN kn THEN 'apply'
                WHEN type IN ('conversation.started', 'conversation.queued',
                              'conversation.assigned', 'conversation.transferred',
                              'conversation.escalated', 'conversation.reopened',
                              'message.sent') THEN 'new'
                WHEN type LIKE 'order.%' THEN 'unknown'
                ELSE 'orphan'
            END AS outcome
        FROM (
            SELECT
                *,
                p_known AND NOT expired AS kn
            FROM (
                SELECT
                    e.part, e.cid, e.k, e.off, e.eff, e.type, e.event_id,
                    w.known    AS p_known,
                    w.inst     AS p_inst,
                    w.is_open  AS p_open,
                    w.last_eff AS p_last,
                    w.ids      AS p_ids,
                    coalesce(w.known AND e.eff - w.last_eff >
                             CASE WHEN w.is_open THEN 604800000 ELSE 90000000 END,
                             false) AS expired
                FROM walk w
                JOIN cw_in e ON e.part = w.part AND e.cid = w.cid AND e.k = w.k + 1
            )
        )
    )
)
SELECT * EXCLUDE (ids) FROM walk WHERE k > 0;

-- Final state of every conversation id at the reading (last step of its walk).
CREATE OR REPLACE TABLE cw_final AS
SELECT c.part, c.cid, c.known, c.inst, c.is_open, c.last_eff, w.wm_final
FROM cw c
JOIN (SELECT part, cid, max(k) AS k FROM cw GROUP BY part, cid) m USING (part, cid, k)
JOIN part_wm w USING (part);

-- Agent (shop_id, agent_id) and customer (shop_id, customer_id) entities: an id is a duplicate
-- while it is among the entity's last 2,000 remembered ids (approximated by the last 2,000
-- events of the entity).
CREATE OR REPLACE TABLE ent_dup AS
WITH e AS (
    SELECT
        part, off, event_id,
        CASE WHEN type LIKE 'agent.%' THEN 'a|' || shop_id || '|' || agent_id
             ELSE 'c|' || shop_id || '|' || customer_id END AS ekey,
        eff
    FROM ev
    WHERE type LIKE 'agent.%' OR (type LIKE 'order.%' AND conversation_id IS NULL)
), i AS (
    SELECT *, row_number() OVER (PARTITION BY ekey ORDER BY eff, part, off) AS idx FROM e
)
SELECT
    part, off,
    coalesce(idx - lag(idx) OVER (PARTITION BY ekey, event_id ORDER BY idx) <= 2000, false)
        AS is_dup
FROM i;

-- evx: every valid event with what happened to it.
--   outcome: new (created a conversation) | apply | dup | orphan | unknown (order naming a
--   conversation this worker does not know)
CREATE OR REPLACE TABLE evx AS
SELECT
    e.*,
    coalesce(c.outcome, CASE WHEN d.is_dup THEN 'dup' ELSE 'apply' END) AS outcome,
    c.inst,
    c.open_before
FROM ev e
LEFT JOIN cw c ON c.part = e.part AND c.off = e.off
LEFT JOIN ent_dup d ON d.part = e.part AND d.off = e.off;
