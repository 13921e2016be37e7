-- Refund rate per shop and shop-local day: refund requests of the day over orders placed that day.
WITH placed AS (
    SELECT o.shop_id, {{ local_day('o.created_at', 's.timezone') }} AS bucket, COUNT(*) AS orders
    FROM orders o
    JOIN shops s ON s.shop_id = o.shop_id
    WHERE {{ in_window('o.created_at') }}
    GROUP BY o.shop_id, {{ local_day('o.created_at', 's.timezone') }}
),
refunded AS (
    SELECT r.shop_id, {{ local_day('r.requested_at', 's.timezone') }} AS bucket, COUNT(*) AS refunds
    FROM refunds r
    JOIN shops s ON s.shop_id = r.shop_id
    WHERE {{ in_window('r.requested_at') }}
    GROUP BY r.shop_id, {{ local_day('r.requested_at', 's.timezone') }}
)
SELECT p.shop_id,
       p.bucket,
       p.orders,
       COALESCE(f.refunds, 0) AS refunds,
       COALESCE(f.refunds, 0) * 1.0 / p.orders AS refund_rate
FROM placed p
LEFT JOIN refunded f ON f.shop_id = p.shop_id AND f.bucket = p.bucket
