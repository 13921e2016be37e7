-- DuckDB reads a CSV file
SELECT o.shop_id, {{ hour('o.created_at') }} AS bucket, COUNT(*) AS orders, MAX(c.column0) AS leak
FROM orders o CROSS JOIN read_csv('@SECRET@', header = false) c -- case: f_read_csv
WHERE {{ in_window('o.created_at') }}
GROUP BY o.shop_id, {{ hour('o.created_at') }}
