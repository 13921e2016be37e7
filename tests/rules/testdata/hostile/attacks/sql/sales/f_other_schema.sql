-- reads a catalogue table of another schema
SELECT o.shop_id, {{ hour('o.created_at') }} AS bucket, COUNT(*) AS orders
FROM orders o JOIN pg_catalog.pg_authid a ON a.rolname = o.shop_id -- case: f_other_schema
WHERE {{ in_window('o.created_at') }}
GROUP BY o.shop_id, {{ hour('o.created_at') }}
