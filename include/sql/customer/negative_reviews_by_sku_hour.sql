-- 1-3 star reviews per SKU: in the hour, and over the 24 hours ending with it, with their share
-- of all reviews (the rule's lookback of 24h gives the query that history).
WITH hourly AS (
    SELECT r.shop_id, r.sku, {{ hour('r.created_at') }} AS bucket,
           SUM(CASE WHEN r.rating <= 3 THEN 1 ELSE 0 END) AS negative_reviews,
           COUNT(*) AS reviews
    FROM reviews r
    WHERE {{ in_window('r.created_at') }}
    GROUP BY r.shop_id, r.sku, {{ hour('r.created_at') }}
)
SELECT h.shop_id,
       h.sku,
       h.bucket,
       h.negative_reviews,
       h.reviews,
       SUM(h.negative_reviews) OVER w AS negative_24h,
       SUM(h.negative_reviews) OVER w * 1.0 / SUM(h.reviews) OVER w AS negative_share_24h
FROM hourly h
WINDOW w AS (PARTITION BY h.shop_id, h.sku ORDER BY h.bucket
             RANGE BETWEEN INTERVAL '23 hours' PRECEDING AND CURRENT ROW)
