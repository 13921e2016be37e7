SELECT o.shop_id, {{ local_day('o.created_at', 's.timezone') }} AS bucket, COUNT(*) AS orders
FROM orders o
JOIN shops s ON s.shop_id = o.shop_id
WHERE {{ in_window('o.created_at') }}
GROUP BY o.shop_id, {{ local_day('o.created_at', 's.timezone') }}
