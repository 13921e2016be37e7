SELECT o.shop_id, {{ hour('o.created_at') }} AS bucket, COUNT(*) AS orders -- case: f_two_statements
FROM orders o
WHERE {{ in_window('o.created_at') }}
GROUP BY o.shop_id, {{ hour('o.created_at') }};
SET enable_external_access = true
