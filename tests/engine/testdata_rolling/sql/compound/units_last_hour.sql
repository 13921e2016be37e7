-- Units of each SKU sold in the hour before the window's end, from the order lines' rollup.
SELECT r.shop_id, r.sku, CAST({{ last_bucket }} AS TIMESTAMPTZ) AS bucket, SUM(r.units) AS units_last_hour
FROM {{ rollup('sales/orders_by_sku_slice.sql') }} r
WHERE r.bucket >= CAST({{ window_end }} AS TIMESTAMPTZ) - INTERVAL '1 hour'
GROUP BY r.shop_id, r.sku
