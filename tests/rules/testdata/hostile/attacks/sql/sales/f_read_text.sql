-- DuckDB reads a file as a table
SELECT o.shop_id, {{ hour('o.created_at') }} AS bucket, COUNT(*) AS orders, MAX(s.content) AS leak
FROM orders o CROSS JOIN read_text('@SECRET@') s -- case: f_read_text
WHERE {{ in_window('o.created_at') }}
GROUP BY o.shop_id, {{ hour('o.created_at') }}
