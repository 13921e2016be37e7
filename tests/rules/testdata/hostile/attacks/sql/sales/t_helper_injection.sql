-- SQL pasted through a helper's argument
SELECT o.shop_id, {{ hour("o.created_at) AS bucket, 1 AS orders FROM orders o; DELETE FROM orders; --") }} AS bucket, COUNT(*) AS orders -- case: t_helper_injection
FROM orders o
WHERE {{ in_window('o.created_at') }}
GROUP BY o.shop_id, {{ hour('o.created_at') }}
