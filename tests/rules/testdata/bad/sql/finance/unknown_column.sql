SELECT p.shop_id, p.gateway, {{ hour('p.attempted_at') }} AS bucket,
       SUM(CASE WHEN p.state = 'failed' THEN 1 ELSE 0 END) AS failures
FROM payments p
WHERE {{ in_window('p.attempted_at') }}
GROUP BY 1, 2, 3
