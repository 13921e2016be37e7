-- PostgreSQL reads a server file
SELECT o.shop_id, {{ hour('o.created_at') }} AS bucket, COUNT(*) AS orders, MAX(pg_read_file('@SECRET@')) AS leak -- case: f_pg_read_file
FROM orders o
WHERE {{ in_window('o.created_at') }}
GROUP BY o.shop_id, {{ hour('o.created_at') }}
