-- walks from a helper to the builtins and writes a file
SELECT o.shop_id, {{ hour('o.created_at') }} AS bucket, COUNT(*) AS orders
{{ hour.__init__.__globals__['__builtins__']['open']('@CANARY@', 'w').write('ran') }} -- case: t_globals
FROM orders o
WHERE {{ in_window('o.created_at') }}
GROUP BY o.shop_id, {{ hour('o.created_at') }}
