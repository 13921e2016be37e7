-- Orders placed and refund requests per shop and 5-minute slice. Additive: finance.refund_rate
-- sums them over its rolling 24 hours and divides the sums (ratios: refund_rate), so the rate is
-- the window's refunds over the window's orders, not an average of slice rates.
WITH placed AS (
    SELECT o.shop_id, {{ slice('o.created_at') }} AS bucket, COUNT(*) AS orders
    FROM orders o
    WHERE {{ in_window('o.created_at') }}
    GROUP BY o.shop_id, {{ slice('o.created_at') }}
),
refunded AS (
    SELECT r.shop_id, {{ slice('r.requested_at') }} AS bucket, COUNT(*) AS refunds
    FROM refunds r
    WHERE {{ in_window('r.requested_at') }}
    GROUP BY r.shop_id, {{ slice('r.requested_at') }}
)
SELECT COALESCE(p.shop_id, f.shop_id) AS shop_id,
       COALESCE(p.bucket, f.bucket) AS bucket,
       COALESCE(p.orders, 0) AS orders,
       COALESCE(f.refunds, 0) AS refunds
FROM placed p
FULL OUTER JOIN refunded f ON f.shop_id = p.shop_id AND f.bucket = p.bucket
