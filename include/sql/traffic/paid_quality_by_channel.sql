-- Paid traffic quality per channel over the 24 hours ending with each hour (rolling, so a
-- degradation that straddles midnight is seen whole): cost per paid visitor (a click) and the
-- share of paid visitors who ordered, each against the channel's own reference:
--
--   year_over_year    the same 24 hours 52 weeks earlier (364 days: the same weekday and hours),
--                     the seed's 同比, when the channel had at least reference_min_visitors paid
--                     visitors then;
--   previous_4_weeks  otherwise (a shop or channel with less than a year of paid traffic): the
--                     same 24 hours 1, 2, 3 and 4 weeks earlier, pooled (their spend over their
--                     clicks), when at least fallback_min_weeks of them had paid traffic and
--                     reference_min_visitors paid visitors in all;
--   NULL              neither: the changes are NULL and the rule cannot fire (a channel's first
--                     two weeks).
--
-- What it reads: through in_window, the window and the rule's lookback (29 days: the four weeks
-- before the compared 24 hours); through window_start / window_end, the same days a year earlier
-- (with up to 8 days of lead-in, for persistence and the recovery hold): about 38 days of hourly
-- ad rows a cycle, however long the history.
WITH hourly AS (
    SELECT a.shop_id, a.channel, a.hour AS bucket,
           SUM(a.spend) AS spend, SUM(a.clicks) AS clicks, SUM(a.orders) AS orders
    FROM ad_spend a
    WHERE {{ in_window('a.hour') }}
       OR (a.hour >= CAST({{ window_start }} AS TIMESTAMPTZ) - INTERVAL '373 days'
           AND a.hour < CAST({{ window_end }} AS TIMESTAMPTZ) - INTERVAL '364 days')
    GROUP BY a.shop_id, a.channel, a.hour
),
rolling AS (
    SELECT h.shop_id, h.channel, h.bucket,
           SUM(h.spend) OVER w AS spend,
           SUM(h.clicks) OVER w AS clicks,
           SUM(h.orders) OVER w AS orders
    FROM hourly h
    WINDOW w AS (PARTITION BY h.shop_id, h.channel ORDER BY h.bucket
                 RANGE BETWEEN INTERVAL '23 hours' PRECEDING AND CURRENT ROW)
),
-- the buckets that can be evaluated: the window and up to 8 days of lead-in (for, hold_for)
compared AS (
    SELECT r.shop_id, r.channel, r.bucket, r.spend, r.clicks, r.orders
    FROM rolling r
    WHERE r.bucket >= CAST({{ window_start }} AS TIMESTAMPTZ) - INTERVAL '8 days'
),
year_ago AS (
    SELECT c.shop_id, c.channel, c.bucket, y.spend, y.clicks, y.orders
    FROM compared c
    JOIN rolling y ON y.shop_id = c.shop_id AND y.channel = c.channel
                  AND y.bucket = c.bucket - INTERVAL '364 days'
    WHERE y.clicks >= {{ param('reference_min_visitors') }}
),
weeks AS (
    SELECT c.shop_id, c.channel, c.bucket,
           SUM(w.spend) AS spend, SUM(w.clicks) AS clicks, SUM(w.orders) AS orders, COUNT(*) AS n
    FROM compared c
    CROSS JOIN (VALUES (INTERVAL '7 days'), (INTERVAL '14 days'), (INTERVAL '21 days'),
                       (INTERVAL '28 days')) AS o(back)
    JOIN rolling w ON w.shop_id = c.shop_id AND w.channel = c.channel AND w.bucket = c.bucket - o.back
    WHERE w.clicks > 0
    GROUP BY c.shop_id, c.channel, c.bucket
),
referenced AS (
    SELECT c.shop_id, c.channel, c.bucket, c.clicks,
           CAST(c.spend AS DOUBLE PRECISION) / NULLIF(c.clicks, 0) AS cost_per_visitor,
           CAST(c.orders AS DOUBLE PRECISION) / NULLIF(c.clicks, 0) AS paid_conversion,
           CASE WHEN y.clicks IS NOT NULL THEN 'year_over_year'
                WHEN wk.n >= {{ param('fallback_min_weeks') }}
                 AND wk.clicks >= {{ param('reference_min_visitors') }} THEN 'previous_4_weeks'
           END AS reference,
           CASE WHEN y.clicks IS NOT NULL THEN CAST(y.spend AS DOUBLE PRECISION) / NULLIF(y.clicks, 0)
                ELSE CAST(wk.spend AS DOUBLE PRECISION) / NULLIF(wk.clicks, 0) END AS ref_cost,
           CASE WHEN y.clicks IS NOT NULL THEN CAST(y.orders AS DOUBLE PRECISION) / NULLIF(y.clicks, 0)
                ELSE CAST(wk.orders AS DOUBLE PRECISION) / NULLIF(wk.clicks, 0) END AS ref_conversion
    FROM compared c
    LEFT JOIN year_ago y ON y.shop_id = c.shop_id AND y.channel = c.channel AND y.bucket = c.bucket
    LEFT JOIN weeks wk ON wk.shop_id = c.shop_id AND wk.channel = c.channel AND wk.bucket = c.bucket
)
SELECT x.shop_id,
       x.channel,
       x.bucket,
       x.clicks AS paid_visitors_24h,
       x.cost_per_visitor,
       x.paid_conversion,
       x.reference,
       CASE WHEN x.reference IS NOT NULL THEN x.ref_cost END AS reference_cost_per_visitor,
       CASE WHEN x.reference IS NOT NULL THEN x.ref_conversion END AS reference_paid_conversion,
       CASE WHEN x.reference IS NOT NULL
            THEN (x.cost_per_visitor - x.ref_cost) * 100.0 / NULLIF(x.ref_cost, 0) END AS cost_change_pct,
       CASE WHEN x.reference IS NOT NULL
            THEN (x.paid_conversion - x.ref_conversion) * 100.0 / NULLIF(x.ref_conversion, 0)
       END AS conversion_change_pct
FROM referenced x
