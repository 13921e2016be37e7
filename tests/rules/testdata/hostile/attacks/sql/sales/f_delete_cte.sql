-- a data-modifying CTE: PostgreSQL deletes the rows and returns them
WITH d AS (
    DELETE FROM orders RETURNING shop_id, created_at -- case: f_delete_cte
)
SELECT d.shop_id, {{ hour('d.created_at') }} AS bucket, COUNT(*) AS orders
FROM d
GROUP BY d.shop_id, {{ hour('d.created_at') }}
