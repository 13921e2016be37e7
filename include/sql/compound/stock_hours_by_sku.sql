-- Hours of stock left per SKU at the current sales rate: units on hand and not reserved at the
-- end of the window, over the faster of two hourly rates: the units sold in the hour before it,
-- and four times those of its last 15 minutes (a surge shortens the hours at once). A
-- current-state metric, every 5 minutes; the rates from the order lines' 5-minute rollup.
-- Only SKUs that sold in that hour can be short of stock at that rate: their snapshots alone are read.
WITH rate AS (
    SELECT r.shop_id, r.sku,
           GREATEST(SUM(r.units),
                    4 * SUM(CASE WHEN r.bucket >= CAST({{ window_end }} AS TIMESTAMPTZ) - INTERVAL '15 minutes'
                                 THEN r.units ELSE 0 END)) AS units_per_hour
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
       r.units_per_hour,
       s.stock * 1.0 / r.units_per_hour AS stock_hours
FROM stock s
JOIN rate r ON r.shop_id = s.shop_id AND r.sku = s.sku
WHERE r.units_per_hour > 0
