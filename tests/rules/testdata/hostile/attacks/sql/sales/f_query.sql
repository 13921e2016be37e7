-- DuckDB runs a query given as a string
SELECT o.shop_id, {{ hour('o.created_at') }} AS bucket, COUNT(*) AS orders, (SELECT MAX(q.x) FROM query('SELECT 42 AS x') q) AS leak -- case: f_query
FROM orders o
WHERE {{ in_window('o.created_at') }}
GROUP BY o.shop_id, {{ hour('o.created_at') }}
