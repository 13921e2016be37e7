-- Paid traffic quality per channel, over the 24 hours ending with each hour (rolling, so a
-- degradation that straddles midnight is seen whole): cost per paid visitor (a click) and
-- the share of paid visitors who ordered.
WITH hourly AS (
    SELECT a.shop_id, a.channel, a.hour AS bucket,
           SUM(a.spend) AS spend, SUM(a.clicks) AS clicks, SUM(a.orders) AS orders
    FROM ad_spend a
    WHERE {{ in_window('a.hour') }}
    GROUP BY a.shop_id, a.channel, a.hour
),
rolling AS (
    SELECT h.shop_id, h.channel, h.bucket,
           SUM(h.spend) OVER w AS spend_24h,
           SUM(h.clicks) OVER w AS paid_visitors_24h,
           SUM(h.orders) OVER w AS paid_orders_24h
    FROM hourly h
    WINDOW w AS (PARTITION BY h.shop_id, h.channel ORDER BY h.bucket
                 RANGE BETWEEN INTERVAL '23 hours' PRECEDING AND CURRENT ROW)
)
SELECT r.shop_id,
       r.channel,
       r.bucket,
       r.paid_visitors_24h,
       r.spend_24h / NULLIF(r.paid_visitors_24h, 0) AS cost_per_visitor,
       r.paid_orders_24h * 1.0 / NULLIF(r.paid_visitors_24h, 0) AS paid_conversion
FROM rolling r
