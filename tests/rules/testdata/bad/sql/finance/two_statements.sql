SELECT p.shop_id, {{ hour('p.attempted_at') }} AS bucket, COUNT(*) AS failures
FROM payments p WHERE {{ in_window('p.attempted_at') }} GROUP BY 1, 2;
SELECT 1 AS shop_id
