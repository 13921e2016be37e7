SELECT p.shop_id, {{ hour('p.attempted_at') }} AS bucket, COUNT(*) AS failures
FROM payment_attempts p
WHERE {{ in_window('p.attempted_at') }}
GROUP BY 1, 2
