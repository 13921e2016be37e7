-- a typo on line 3
SELECT p.shop_id, {{ hour('p.attempted_at') }} AS bucket,
       COUNT(*) FILTER WHERE AS failures
FROM payments p
WHERE {{ in_window('p.attempted_at') }}
GROUP BY 1, 2
