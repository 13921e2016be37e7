SELECT p.shop_id, {{ hour('p.attempted_at') }} AS bucket, COUNT(*) AS failures
FROM payments p
WHERE {{ in_window('p.attempted_at') }} AND p.failure_code = {{ param('code') }}
GROUP BY 1, 2
