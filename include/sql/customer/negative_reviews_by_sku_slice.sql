-- 1-3 star reviews and all reviews per SKU and 5-minute slice. Additive: the review rules sum
-- them over their rolling windows (customer.negative_review: the last hour;
-- customer.negative_review_burst: the last 24 hours, against the same 24 hours on earlier days).
SELECT r.shop_id,
       r.sku,
       {{ slice('r.created_at') }} AS bucket,
       SUM(CASE WHEN r.rating <= 3 THEN 1 ELSE 0 END) AS negative_reviews,
       COUNT(*) AS reviews
FROM reviews r
WHERE {{ in_window('r.created_at') }}
GROUP BY r.shop_id, r.sku, {{ slice('r.created_at') }}
