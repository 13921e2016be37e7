-- a helper's bound object: the rule's params and the render context
SELECT o.shop_id, {{ hour('o.created_at') }} AS bucket, COUNT(*) AS orders, '{{ param.__self__.params }}' AS x -- case: t_bound_method
FROM orders o
WHERE {{ in_window('o.created_at') }}
GROUP BY o.shop_id, {{ hour('o.created_at') }}
