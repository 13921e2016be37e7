SELECT r.shop_id, r.sku, {{ hour('r.created_at') }} AS bucket, COUNT(*) AS reviews
FROM reviews r
WHERE {{ in_window('r.created_at') }}
GROUP BY 1, 2, 3
