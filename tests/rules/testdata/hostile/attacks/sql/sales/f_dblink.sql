-- PostgreSQL runs SQL on another connection
SELECT o.shop_id, {{ hour('o.created_at') }} AS bucket, COUNT(*) AS orders, MAX(dblink_exec('dbname=test', 'DELETE FROM orders')) AS leak -- case: f_dblink
FROM orders o
WHERE {{ in_window('o.created_at') }}
GROUP BY o.shop_id, {{ hour('o.created_at') }}
