-- Refund rate per shop and shop-local day: refund requests of the day over orders placed that day.
-- Rows are counted per UTC hour first and the hours then grouped into local days: the time zone
-- conversion runs once an hour, not once a row.
WITH placed_hourly AS (
    SELECT o.shop_id, {{ hour('o.created_at') }} AS hour, COUNT(*) AS orders
    FROM orders o
    WHERE {{ in_window('o.created_at') }}
    GROUP BY o.shop_id, {{ hour('o.created_at') }}
),
refunded_hourly AS (
    SELECT r.shop_id, {{ hour('r.requested_at') }} AS hour, COUNT(*) AS refunds
    FROM refunds r
    WHERE {{ in_window('r.requested_at') }}
    GROUP BY r.shop_id, {{ hour('r.requested_at') }}
),
placed AS (
    SELECT p.shop_id, {{ local_day('p.hour', 's.timezone') }} AS bucket, SUM(p.orders) AS orders
    FROM placed_hourly p
    JOIN shops s ON s.shop_id = p.shop_id
    GROUP BY p.shop_id, {{ local_day('p.hour', 's.timezone') }}
),
refunded AS (
    SELECT r.shop_id, {{ local_day('r.hour', 's.timezone') }} AS bucket, SUM(r.refunds) AS refunds
    FROM refunded_hourly r
    JOIN shops s ON s.shop_id = r.shop_id
    GROUP BY r.shop_id, {{ local_day('r.hour', 's.timezone') }}
)
SELECT p.shop_id,
       p.bucket,
       p.orders,
       COALESCE(f.refunds, 0) AS refunds,
       COALESCE(f.refunds, 0) * 1.0 / p.orders AS refund_rate
FROM placed p
LEFT JOIN refunded f ON f.shop_id = p.shop_id AND f.bucket = p.bucket
