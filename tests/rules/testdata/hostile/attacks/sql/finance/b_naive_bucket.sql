-- bucket without a time zone: a TypeError at run time, a lint problem here
SELECT o.shop_id, CAST({{ hour('o.created_at') }} AS TIMESTAMP) AS bucket, COUNT(*) AS orders -- case: b_naive_bucket
FROM orders o
WHERE {{ in_window('o.created_at') }}
GROUP BY o.shop_id, {{ hour('o.created_at') }}
