-- reads the server's configuration
SELECT o.shop_id, {{ hour('o.created_at') }} AS bucket, COUNT(*) AS orders, MAX(current_setting('data_directory')) AS leak -- case: f_current_setting
FROM orders o
WHERE {{ in_window('o.created_at') }}
GROUP BY o.shop_id, {{ hour('o.created_at') }}
