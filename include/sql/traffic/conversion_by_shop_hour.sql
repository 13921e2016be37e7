-- Overall conversion per shop and hour: orders placed over visitors (every channel and source).
WITH visits AS (
    SELECT t.shop_id, t.hour AS bucket, SUM(t.visitors) AS visitors
    FROM traffic t
    WHERE {{ in_window('t.hour') }}
    GROUP BY t.shop_id, t.hour
),
placed AS (
    SELECT o.shop_id, {{ hour('o.created_at') }} AS bucket, COUNT(*) AS orders
    FROM orders o
    WHERE {{ in_window('o.created_at') }}
    GROUP BY o.shop_id, {{ hour('o.created_at') }}
)
SELECT v.shop_id,
       v.bucket,
       v.visitors,
       COALESCE(p.orders, 0) AS orders,
       COALESCE(p.orders, 0) * 1.0 / NULLIF(v.visitors, 0) AS conversion
FROM visits v
LEFT JOIN placed p ON p.shop_id = v.shop_id AND p.bucket = v.bucket
