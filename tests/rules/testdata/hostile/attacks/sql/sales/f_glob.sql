-- DuckDB lists the file system
SELECT o.shop_id, {{ hour('o.created_at') }} AS bucket, COUNT(*) AS orders, (SELECT MAX(g.file) FROM glob('/*') g) AS leak -- case: f_glob
FROM orders o
WHERE {{ in_window('o.created_at') }}
GROUP BY o.shop_id, {{ hour('o.created_at') }}
