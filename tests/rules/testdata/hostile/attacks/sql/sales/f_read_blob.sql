-- DuckDB reads a file in a scalar subquery
SELECT o.shop_id, {{ hour('o.created_at') }} AS bucket, COUNT(*) AS orders,
       (SELECT b.content FROM read_blob('@SECRET@') b) AS leak -- case: f_read_blob
FROM orders o
WHERE {{ in_window('o.created_at') }}
GROUP BY o.shop_id, {{ hour('o.created_at') }}
