-- Payment attempts and failures per shop, gateway and 5-minute slice. Additive:
-- finance.payment_failure sums them over its rolling window and divides the sums
-- (ratios: failure_rate).
SELECT p.shop_id,
       p.gateway,
       {{ slice('p.attempted_at') }} AS bucket,
       COUNT(*) AS attempts,
       SUM(CASE WHEN p.status = 'failed' THEN 1 ELSE 0 END) AS failures
FROM payments p
WHERE {{ in_window('p.attempted_at') }}
GROUP BY p.shop_id, p.gateway, {{ slice('p.attempted_at') }}
