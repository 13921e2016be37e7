SELECT p.shop_id, COUNT(*) AS attempts
FROM payments p
WHERE {{ in_window('p.attempted_at') }}
GROUP BY 1
