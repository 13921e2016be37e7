-- SELECT INTO creates a table
SELECT o.shop_id, {{ hour('o.created_at') }} AS bucket, COUNT(*) AS orders
INTO stolen_orders -- case: f_select_into
FROM orders o
WHERE {{ in_window('o.created_at') }}
GROUP BY o.shop_id, {{ hour('o.created_at') }}
