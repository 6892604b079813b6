-- =====================================================================================
-- 02  Entities: conversation instances (creation, orphans, expiry), duplicates
-- =====================================================================================
-- README "Conversations":
--   "Creation. An event for a conversation with no current state creates it, if its type is
--    conversation.started|queued|assigned|transferred|escalated|reopened or message.sent. Any
--    other event for an unknown conversation (conversation.closed|abandoned,
--    satisfaction.rated) is an orphan: counted in cs_events_orphaned_total{type}, no other
--    effect. (order.* events are never orphans; see Conversion.)"
--   "Expiry. A conversation's deadline is 25 h after its last event if it is closed, 7 days
--    after it if it is open (the last event of any type that took effect for it — ratings,
--    orders and after-sales events included —, duplicates aside). At its deadline it is
--    forgotten; an open one is first closed by timeout then ... An event that arrives for a
--    forgotten conversation is treated as for an unknown one (a new conversation with the same
--    id, or an orphan). Expiry is checked before each event of the conversation takes effect
--    (gap from its last event > 25 h closed / > 7 d open), whenever the partition's watermark
--    passes a deadline (in time order, before the events after it), and at every release
--    against the release's clock (Time, order and lateness): at a reading at now, a
--    conversation whose deadline is before now has expired, whether or not its partition's
--    watermark moved — it is neither waiting, nor holding a session, nor using a slot."
-- README "Time, order and lateness":
--   "A release has a clock ... Once what the partition held has taken effect, its
--    conversations whose deadline (below, Expiry) is before the clock expire, in deadline
--    order, although its watermark stays at the largest ts seen ... A reading at instant now
--    counts as a release of every partition at the end of what was read, with now as its
--    clock."
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
--
-- A conversation's state only changes at its own steps, so "the watermark passes a deadline"
-- needs no step of its own: the next event of the conversation takes effect at or after that
-- watermark, so its gap from the last event is past the deadline too.  A release clock is
-- different (it can be far ahead of every ts of the partition, and an event admitted after the
-- release may even take effect before the old deadline), so each step carries the largest
-- clock of the releases that happened between it and the previous step of its id.

-- cw_steps: the walk's steps, in the order they take effect in the partition.
CREATE OR REPLACE TABLE cw_steps AS
SELECT
    part, conversation_id AS cid, off, eff, type, event_id,
    row_number() OVER w AS k,
    lag(off) OVER w     AS prev_off
FROM ev
WHERE conversation_id IS NOT NULL
  AND (type LIKE 'conversation.%' OR type IN ('message.sent', 'satisfaction.rated')
       OR type LIKE 'order.%')
WINDOW w AS (PARTITION BY part, conversation_id ORDER BY eff, off);

-- rel_clk: the release points that have a clock, numbered g in (partition, offset) order;
-- clock_from = the largest clock of the partition's releases at this offset or after it.
CREATE OR REPLACE TABLE rel_clk AS
SELECT
    part, off, clock_ms,
    row_number() OVER (ORDER BY part, off)                                      AS g,
    max(clock_ms) OVER (PARTITION BY part ORDER BY off DESC ROWS UNBOUNDED PRECEDING)
                                                                                AS clock_from
FROM release_pt
WHERE clock_ms IS NOT NULL;

-- Releases between two steps.  A release right after offset r comes after every record at an
-- offset <= r has taken effect (it makes what was held take effect) and before any record at
-- an offset > r is admitted; the order of taking effect, (effective time, offset), agrees with
-- it (a record admitted after the release takes effect at or after its W >= the release's
-- floor, the largest ts up to r, >= the effective time of every record up to r).  So the releases between step k-1 (offset prev_off) and step
-- k (offset off) are those with prev_off <= r < off (none when off < prev_off), and the
-- conversation expires there iff the largest of their clocks, gap_clock, is past its deadline.
-- (Found as the run g in [lo_g, hi_g] of rel_clk: the first at or after prev_off, the last
-- before off.)
CREATE OR REPLACE TABLE cw_in AS
WITH span AS (
    SELECT s.part, s.cid, s.k, lo.g AS lo_g, hi.g AS hi_g
    FROM cw_steps s
    ASOF JOIN rel_clk lo ON s.part = lo.part AND s.prev_off <= lo.off
    ASOF JOIN rel_clk hi ON s.part = hi.part AND s.off > hi.off
    WHERE lo.g <= hi.g
), gap AS (
    SELECT x.part, x.cid, x.k, max(r.clock_ms) AS gap_clock
    FROM span x
    JOIN rel_clk r ON r.g BETWEEN x.lo_g AND x.hi_g
    GROUP BY x.part, x.cid, x.k
)
SELECT s.*, gap.gap_clock
FROM cw_steps s
LEFT JOIN gap USING (part, cid, k);

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
                    -- expired before this step: by the gap from the last event (the
                    -- watermark passing the deadline comes to the same), or by the clock of
                    -- a release since the previous step (deadline before the clock)
                    coalesce(w.known AND (
                                 e.eff - w.last_eff >
                                     CASE WHEN w.is_open THEN 604800000 ELSE 90000000 END
                                 OR coalesce(e.gap_clock - w.last_eff >
                                     CASE WHEN w.is_open THEN 604800000 ELSE 90000000 END,
                                             false)),
                             false) AS expired
                FROM walk w
                JOIN cw_in e ON e.part = w.part AND e.cid = w.cid AND e.k = w.k + 1
            )
        )
    )
)
SELECT * EXCLUDE (ids) FROM walk WHERE k > 0;

-- Final state of every conversation id at the reading (last step of its walk), and whether it
-- has expired by then.  After its last step the conversation meets the releases that
-- followed it (offset >= that step's), then the reading: a release of its partition at the
-- end of the log, whose watermark is the largest ts seen (wm_final) and whose clock is now.
-- read_clock is the latest of these; the conversation has expired at the reading iff its
-- deadline is before it.
CREATE OR REPLACE TABLE cw_final AS
WITH last AS (
    SELECT c.part, c.cid, c.known, c.inst, c.is_open, c.last_eff, c.off AS last_off
    FROM cw c
    JOIN (SELECT part, cid, max(k) AS k FROM cw GROUP BY part, cid) m USING (part, cid, k)
), c AS (
    SELECT l.*, w.wm_final, greatest(w.wm_final, p.now_ms, a.clock_from) AS read_clock
    FROM last l
    JOIN part_wm w USING (part)
    CROSS JOIN params p
    ASOF LEFT JOIN rel_clk a ON l.part = a.part AND l.last_off <= a.off
)
SELECT
    part, cid, known, inst, is_open, last_eff, wm_final, read_clock,
    coalesce(known AND read_clock - last_eff >
                 CASE WHEN is_open THEN 604800000 ELSE 90000000 END, false) AS expired
FROM c;

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
