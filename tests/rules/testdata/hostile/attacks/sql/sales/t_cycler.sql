-- Jinja's cycler global reaches the os module
SELECT o.shop_id, {{ hour('o.created_at') }} AS bucket, COUNT(*) AS orders
{{ cycler.__init__.__globals__.os.system('touch @CANARY@') }} -- case: t_cycler
FROM orders o
WHERE {{ in_window('o.created_at') }}
GROUP BY o.shop_id, {{ hour('o.created_at') }}
