SELECT o.shop_id, {{ hour('o.created_at') }} AS bucket, COUNT(*) AS orders
FROM orders o
WHERE {{ in_window('o.created_at') }}
GROUP BY o.shop_id, {{ hour('o.created_at') }}
