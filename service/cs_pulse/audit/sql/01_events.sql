-- =====================================================================================
-- 01  Valid events, effective time and order
-- =====================================================================================
-- Inputs created by the Python glue (recompute.py):
--   raw_valid(part, off, j JSON)      records that passed validation (ts normalised to an int)
--   raw_rejected(part, off, reason)   records sent to the dead-letter topic
--   releases(part, off, clock_ms)     "right after the record at this offset the partition was
--                                     released", with the release's clock (epoch ms; NULL: a
--                                     release without a clock); a (part, off) may repeat
--   params(now_ms, now_s, grace_ms)   the reading instant and the grace G
--   shop_cfg(shop, tz, peaks, sale_days, opening, closed)   calendar; shop '' is the default;
--                                     a configured shop's row is its entry over the default's;
--                                     opening = [[ISO day, start minute, end minute], ...]
--                                     (end 1440 = 24:00), closed = ["MM-DD" | "YYYY-MM-DD"]
--   tier_cfg(channel, tier, target_s, clock)   first-response tiers: the defaults with the
--                                     top-level first_response_tiers over them
--
-- README "Time, order and lateness":
--   "Each events partition has a watermark: before a record arrives, W = (largest ts among
--    the valid records that arrived before it in this partition) − G, or higher if the
--    partition was released (below); −∞ at first."
--   "A record's effective time is max(ts, W). A record with ts < W is late
--    (cs_events_late_total): it is not dropped, it takes effect at W instead of its own time."
--   "In each partition, events take effect in the order of (effective time, offset)."
--   "A partition that receives no record for G seconds of wall time is released: everything it
--    holds takes effect and its watermark rises to the largest ts seen."
--   "A release has a clock: the worker's event clock at that moment ... Once what the
--    partition held has taken effect, its conversations whose deadline (below, Expiry) is
--    before the clock expire, in deadline order, although its watermark stays at the largest ts
--    seen (lateness stays a matter of the log). ... A release is persisted (the offset it
--    followed, and its clock) ... A reading at instant now counts as a release of every
--    partition at the end of what was read, with now as its clock."

CREATE OR REPLACE TABLE ev_fields AS
SELECT
    part,
    off,
    j ->> 'type'                                        AS type,
    j ->> 'event_id'                                    AS event_id,
    CAST(j ->> 'ts' AS BIGINT)                          AS ts,
    j ->> 'shop_id'                                     AS shop_id,
    j ->> 'conversation_id'                             AS conversation_id,
    j ->> 'channel'                                     AS channel,
    j ->> 'queue'                                       AS queue,
    j ->> 'agent_id'                                    AS agent_id,
    j ->> 'team'                                        AS team,
    j ->> 'customer_id'                                 AS customer_id,
    j ->> 'to_agent_id'                                 AS to_agent_id,
    j ->> 'to_queue'                                    AS to_queue,
    j ->> 'to_team'                                     AS to_team,
    j ->> 'sender'                                      AS sender,
    CAST(CAST(j ->> 'chars' AS DOUBLE) AS BIGINT)       AS chars,
    CAST(CAST(j ->> 'violations' AS DOUBLE) AS BIGINT)  AS violations,
    j ->> 'status'                                      AS status,
    CAST(CAST(j ->> 'max_concurrency' AS DOUBLE) AS BIGINT) AS max_concurrency,
    CAST(j ->> 'resolved' AS BOOLEAN)                   AS resolved,
    j ->> 'closed_by'                                   AS closed_by,
    CAST(j ->> 'score' AS DOUBLE)                       AS score,
    CAST(j ->> 'scale' AS DOUBLE)                       AS scale,
    CASE WHEN json_type(j, '$.scale_min') IN ('BIGINT', 'UBIGINT', 'DOUBLE')
         THEN CAST(j ->> 'scale_min' AS DOUBLE) END    AS scale_min,
    j ->> 'attitude'                                    AS attitude,
    CAST(j ->> 'amount' AS DOUBLE)                      AS amount,
    -- order.paid / order.refunded / order.returned (README "Customers received ...,
    -- after-sales"): the order they concern, the refund reason, return or exchange
    j ->> 'order_id'                                    AS order_id,
    j ->> 'reason'                                      AS reason,
    j ->> 'kind'                                        AS return_kind
FROM raw_valid;

-- Release points: one per (partition, offset) a release followed.  Releases right after the
-- same offset happen at the same point of the partition's order (nothing is admitted between
-- them), so they act as one whose clock is the largest given (NULL: none had a clock).  The
-- clock does not move the watermark ("lateness stays a matter of the log"): it is used for
-- expiry only (02_entities).
CREATE OR REPLACE TABLE release_pt AS
SELECT part, off, max(clock_ms) AS clock_ms FROM releases GROUP BY part, off;

-- Release floors: a release right after offset r lifts the watermark to the largest ts of
-- the valid records that arrived up to r (the floor is monotone in r, so the latest release
-- before a record gives its floor).
CREATE OR REPLACE TABLE ev_running AS
SELECT
    f.*,
    max(ts) OVER (PARTITION BY part ORDER BY off
                  ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS max_ts_before,
    max(ts) OVER (PARTITION BY part ORDER BY off ROWS UNBOUNDED PRECEDING) AS max_ts_incl
FROM ev_fields f;

CREATE OR REPLACE TABLE release_floor AS
SELECT r.part, r.off AS rel_off, v.max_ts_incl AS floor_ts
FROM release_pt r
ASOF JOIN ev_running v ON r.part = v.part AND r.off >= v.off;

-- ev: one row per valid record, with its watermark W, effective time and lateness.
CREATE OR REPLACE TABLE ev AS
WITH w AS (
    SELECT
        v.*,
        greatest(v.max_ts_before - p.grace_ms, rf.floor_ts) AS wm   -- NULL = −∞
    FROM ev_running v
    CROSS JOIN params p
    ASOF LEFT JOIN release_floor rf ON v.part = rf.part AND v.off > rf.rel_off
)
SELECT
    * EXCLUDE (max_ts_before, max_ts_incl),
    CASE WHEN wm IS NOT NULL AND ts < wm THEN wm ELSE ts END AS eff,   -- max(ts, W)
    coalesce(ts < wm, false)                                 AS late
FROM w;

-- The reading watermark of each partition: every partition counts as released at the end of
-- the log, so its watermark is the largest ts seen in it.  (That release's clock is now, and
-- the expiry at the reading is checked against the later of the two: 02_entities, cw_final.)
CREATE OR REPLACE TABLE part_wm AS
SELECT part, max(ts) AS wm_final FROM ev GROUP BY part;
