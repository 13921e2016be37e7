-- Days of stock cover per SKU at the end of the window (a current-state metric: one bucket,
-- the window's last, every 5 minutes).
-- stock: units on hand and not reserved for orders, over every warehouse; the latest
--   snapshot of each SKU and warehouse at or before the end (the monthly stocktake bounds the
--   look-back to 32 days): the stock now (inventory_latest) where that is not newer than the
--   end, else the latest of the snapshots before it (a replay, or a snapshot landed since), so a
--   cycle groups the snapshots of those few SKUs only.
-- in_transit, supplier_id: for the suggested purchase order (the rule's attributes).
-- daily_forecast: expected units a day, the larger of the trailing 14-day average and the
--   last 24 hours' rate, so a spike shortens the cover at once; both from the order lines'
--   5-minute rollup (the sales rules' own), not from the order lines themselves.
WITH before_end AS (
    SELECT v.shop_id, v.sku, v.warehouse_id, v.on_hand, v.reserved, v.in_transit,
           ROW_NUMBER() OVER (PARTITION BY v.shop_id, v.sku, v.warehouse_id ORDER BY v.snapshot_at DESC) AS rn
    FROM inventory_snapshots v
    JOIN inventory_latest n ON n.shop_id = v.shop_id AND n.sku = v.sku AND n.warehouse_id = v.warehouse_id
    WHERE n.snapshot_at > CAST({{ window_end }} AS TIMESTAMPTZ)
      AND v.snapshot_at <= CAST({{ window_end }} AS TIMESTAMPTZ)
      AND v.snapshot_at > CAST({{ window_end }} AS TIMESTAMPTZ) - INTERVAL '32 days'
),
latest AS (
    SELECT n.shop_id, n.sku, n.on_hand, n.reserved, n.in_transit
    FROM inventory_latest n
    WHERE n.snapshot_at <= CAST({{ window_end }} AS TIMESTAMPTZ)
      AND n.snapshot_at > CAST({{ window_end }} AS TIMESTAMPTZ) - INTERVAL '32 days'
    UNION ALL
    SELECT b.shop_id, b.sku, b.on_hand, b.reserved, b.in_transit
    FROM before_end b
    WHERE b.rn = 1
),
stock AS (
    SELECT l.shop_id, l.sku, SUM(GREATEST(l.on_hand - l.reserved, 0)) AS stock, SUM(l.in_transit) AS in_transit
    FROM latest l
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
