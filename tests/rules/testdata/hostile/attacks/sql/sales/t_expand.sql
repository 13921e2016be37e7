-- a template that expands itself until memory runs out
SELECT o.shop_id, {{ hour('o.created_at') }} AS bucket, COUNT(*) AS orders, '{{ 'x' * 1000000000 }}' AS x -- case: t_expand
FROM orders o
WHERE {{ in_window('o.created_at') }}
GROUP BY o.shop_id, {{ hour('o.created_at') }}
