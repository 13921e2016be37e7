-- Days of stock cover per SKU at the end of the window (a current-state metric: one bucket,
-- the window's last, every 5 minutes).
-- stock: units on hand and not reserved for orders, over every warehouse; the latest
--   snapshot of each SKU and warehouse (the monthly stocktake bounds the look-back to 32 days).
-- in_transit, supplier_id: for the suggested purchase order (the rule's attributes).
-- daily_forecast: expected units a day, the larger of the trailing 14-day average and the
--   last 24 hours' rate, so a spike shortens the cover at once; both from the order lines'
--   5-minute rollup (the sales rules' own), not from the order lines themselves.
WITH latest AS (
    SELECT v.shop_id, v.sku, v.warehouse_id, v.on_hand, v.reserved, v.in_transit,
           ROW_NUMBER() OVER (PARTITION BY v.shop_id, v.sku, v.warehouse_id ORDER BY v.snapshot_at DESC) AS rn
    FROM inventory_snapshots v
    WHERE v.snapshot_at <= CAST({{ window_end }} AS TIMESTAMPTZ)
      AND v.snapshot_at > CAST({{ window_end }} AS TIMESTAMPTZ) - INTERVAL '32 days'
),
stock AS (
    SELECT l.shop_id, l.sku, SUM(GREATEST(l.on_hand - l.reserved, 0)) AS stock, SUM(l.in_transit) AS in_transit
    FROM latest l
    WHERE l.rn = 1
    GROUP BY l.shop_id, l.sku
),
sold AS (
    SELECT r.shop_id, r.sku,
           SUM(r.units) / 14.0 AS avg_14d,
           SUM(CASE WHEN r.bucket >= CAST({{ window_end }} AS TIMESTAMPTZ) - INTERVAL '24 hours'
                    THEN r.units ELSE 0 END) AS last_24h
    FROM {{ rollup('sales/orders_by_sku_slice.sql') }} r
    WHERE r.bucket >= CAST({{ window_end }} AS TIMESTAMPTZ) - INTERVAL '14 days'
    GROUP BY r.shop_id, r.sku
)
SELECT s.shop_id,
       s.sku,
       CAST({{ last_bucket }} AS TIMESTAMPTZ) AS bucket,
       s.stock,
       s.in_transit,
       p.supplier_id,
       d.avg_14d,
       GREATEST(d.avg_14d, d.last_24h) AS daily_forecast,
       CASE WHEN GREATEST(d.avg_14d, d.last_24h) > 0
            THEN s.stock / GREATEST(d.avg_14d, d.last_24h) END AS cover_days
FROM stock s
JOIN sold d ON d.shop_id = s.shop_id AND d.sku = s.sku
LEFT JOIN products p ON p.shop_id = s.shop_id AND p.sku = s.sku
