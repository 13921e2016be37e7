-- Hours of stock left per SKU at the current sales rate: units on hand and not reserved at the
-- end of the window, over the units sold in the hour before it (a current-state metric, every 5
-- minutes; the rate from the order lines' 5-minute rollup).
-- Only SKUs that sold in that hour can be short of stock at that rate: their snapshots alone are read.
WITH rate AS (
    SELECT r.shop_id, r.sku, SUM(r.units) AS units_last_hour
    FROM {{ rollup('sales/orders_by_sku_slice.sql') }} r
    WHERE r.bucket >= CAST({{ window_end }} AS TIMESTAMPTZ) - INTERVAL '1 hour'
    GROUP BY r.shop_id, r.sku
),
latest AS (
    SELECT v.shop_id, v.sku, v.warehouse_id, v.on_hand, v.reserved,
           ROW_NUMBER() OVER (PARTITION BY v.shop_id, v.sku, v.warehouse_id ORDER BY v.snapshot_at DESC) AS rn
    FROM inventory_snapshots v
    JOIN rate r ON r.shop_id = v.shop_id AND r.sku = v.sku
    WHERE v.snapshot_at <= CAST({{ window_end }} AS TIMESTAMPTZ)
      AND v.snapshot_at > CAST({{ window_end }} AS TIMESTAMPTZ) - INTERVAL '32 days'
),
stock AS (
    SELECT l.shop_id, l.sku, SUM(GREATEST(l.on_hand - l.reserved, 0)) AS stock
    FROM latest l
    WHERE l.rn = 1
    GROUP BY l.shop_id, l.sku
)
SELECT s.shop_id,
       s.sku,
       CAST({{ last_bucket }} AS TIMESTAMPTZ) AS bucket,
       s.stock,
       r.units_last_hour,
       s.stock * 1.0 / r.units_last_hour AS stock_hours
FROM stock s
JOIN rate r ON r.shop_id = s.shop_id AND r.sku = s.sku
WHERE r.units_last_hour > 0
