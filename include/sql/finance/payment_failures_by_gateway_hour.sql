-- Payment attempts and failures per shop, gateway and hour.
SELECT p.shop_id,
       p.gateway,
       {{ hour('p.attempted_at') }} AS bucket,
       COUNT(*) AS attempts,
       SUM(CASE WHEN p.status = 'failed' THEN 1 ELSE 0 END) AS failures,
       SUM(CASE WHEN p.status = 'failed' THEN 1 ELSE 0 END) * 1.0 / COUNT(*) AS failure_rate
FROM payments p
WHERE {{ in_window('p.attempted_at') }}
GROUP BY p.shop_id, p.gateway, {{ hour('p.attempted_at') }}
