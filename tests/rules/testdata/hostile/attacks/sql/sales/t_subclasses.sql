-- a string's class hierarchy: every class loaded in the process
SELECT o.shop_id, {{ hour('o.created_at') }} AS bucket, COUNT(*) AS orders, '{{ ''.__class__.__mro__[1].__subclasses__() }}' AS x -- case: t_subclasses
FROM orders o
WHERE {{ in_window('o.created_at') }}
GROUP BY o.shop_id, {{ hour('o.created_at') }}
