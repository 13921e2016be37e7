-- PostgreSQL imports a server file as a large object
SELECT o.shop_id, {{ hour('o.created_at') }} AS bucket, COUNT(*) AS orders, MAX(lo_import('@SECRET@')) AS leak -- case: f_lo_import
FROM orders o
WHERE {{ in_window('o.created_at') }}
GROUP BY o.shop_id, {{ hour('o.created_at') }}
