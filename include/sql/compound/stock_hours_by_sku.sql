-- Hours of stock left per SKU at the current sales rate: units on hand and not reserved at the
-- end of the window, over the faster of two hourly rates: the units sold in the hour before it,
-- and four times those of its last 15 minutes (a surge shortens the hours at once). A
-- current-state metric, every 5 minutes; the rates from the order lines' 5-minute rollup.
-- Only SKUs that sold in that hour can be short of stock at that rate: their stock alone is read,
-- now (inventory_latest) or, for a SKU with a snapshot after the end, as of the end (snapshots).
WITH rate AS (
    SELECT r.shop_id, r.sku,
           GREATEST(SUM(r.units),
                    4 * SUM(CASE WHEN r.bucket >= CAST({{ window_end }} AS TIMESTAMPTZ) - INTERVAL '15 minutes'
                                 THEN r.units ELSE 0 END)) AS units_per_hour
    FROM {{ rollup('sales/orders_by_sku_slice.sql') }} r
    WHERE r.bucket >= CAST({{ window_end }} AS TIMESTAMPTZ) - INTERVAL '1 hour'
    GROUP BY r.shop_id, r.sku
),
before_end AS (
    SELECT v.shop_id, v.sku, v.warehouse_id, v.on_hand, v.reserved,
           ROW_NUMBER() OVER (PARTITION BY v.shop_id, v.sku, v.warehouse_id ORDER BY v.snapshot_at DESC) AS rn
    FROM inventory_snapshots v
    JOIN inventory_latest n ON n.shop_id = v.shop_id AND n.sku = v.sku AND n.warehouse_id = v.warehouse_id
    JOIN rate r ON r.shop_id = v.shop_id AND r.sku = v.sku
    WHERE n.snapshot_at > CAST({{ window_end }} AS TIMESTAMPTZ)
      AND v.snapshot_at <= CAST({{ window_end }} AS TIMESTAMPTZ)
      AND v.snapshot_at > CAST({{ window_end }} AS TIMESTAMPTZ) - INTERVAL '32 days'
),
latest AS (
    SELECT n.shop_id, n.sku, n.on_hand, n.reserved
    FROM inventory_latest n
    JOIN rate r ON r.shop_id = n.shop_id AND r.sku = n.sku
    WHERE n.snapshot_at <= CAST({{ window_end }} AS TIMESTAMPTZ)
      AND n.snapshot_at > CAST({{ window_end }} AS TIMESTAMPTZ) - INTERVAL '32 days'
    UNION ALL
    SELECT b.shop_id, b.sku, b.on_hand, b.reserved
    FROM before_end b
    WHERE b.rn = 1
),
stock AS (
    SELECT l.shop_id, l.sku, SUM(GREATEST(l.on_hand - l.reserved, 0)) AS stock
    FROM latest l
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
