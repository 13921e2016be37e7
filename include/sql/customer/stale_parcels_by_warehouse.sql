-- Parcels in transit per warehouse at the end of the window, and how many have had no
-- tracking update for stale_hours: a current-state metric, told as of {{ window_end }}, so any
-- past cycle is replayed as it was then.
-- In transit at the end: picked up before it (shipments.shipped_at, the pick-up scan) in the 30
-- days before it, and not delivered by then (delivered_at, the delivery scan). Stale: no scan in
-- the stale_hours before the end. The parcel's latest scan (last_tracking_at) decides that for
-- every parcel not scanned since the end; only a parcel scanned since (a cycle replayed, or the
-- scans of the slice still landing) has its scans before the end read from the carrier's history
-- (tracking_events). A scan or a delivery after the end does not count.
-- A cycle reads the 30 days of shipments (no history of scans): its cost does not grow with the
-- tracking history kept.
WITH in_transit AS (
    SELECT s.shop_id,
           s.warehouse_id,
           s.shipment_id,
           s.last_tracking_at
    FROM shipments s
    WHERE s.shipped_at < CAST({{ window_end }} AS TIMESTAMPTZ)
      AND s.shipped_at >= CAST({{ window_end }} AS TIMESTAMPTZ) - INTERVAL '30 days'
      AND (s.delivered_at IS NULL OR s.delivered_at >= CAST({{ window_end }} AS TIMESTAMPTZ))
),
scanned_before_end AS (
    SELECT DISTINCT e.shipment_id
    FROM tracking_events e
    JOIN in_transit p ON p.shipment_id = e.shipment_id
    WHERE p.last_tracking_at >= CAST({{ window_end }} AS TIMESTAMPTZ)
      AND e.event_at < CAST({{ window_end }} AS TIMESTAMPTZ)
      AND e.event_at >= CAST({{ window_end }} AS TIMESTAMPTZ) - {{ param('stale_hours') }} * INTERVAL '1 hour'
),
judged AS (
    SELECT p.shop_id,
           p.warehouse_id,
           CASE WHEN p.last_tracking_at < CAST({{ window_end }} AS TIMESTAMPTZ)
                                          - {{ param('stale_hours') }} * INTERVAL '1 hour' THEN 1
                WHEN p.last_tracking_at >= CAST({{ window_end }} AS TIMESTAMPTZ) AND s.shipment_id IS NULL THEN 1
                ELSE 0 END AS stale
    FROM in_transit p
    LEFT JOIN scanned_before_end s ON s.shipment_id = p.shipment_id
)
SELECT j.shop_id,
       j.warehouse_id,
       CAST({{ last_bucket }} AS TIMESTAMPTZ) AS bucket,
       COUNT(*) AS in_transit,
       SUM(j.stale) AS stale_parcels,
       SUM(j.stale) * 1.0 / COUNT(*) AS stale_share
FROM judged j
GROUP BY j.shop_id, j.warehouse_id
