-- Parcels in transit per warehouse at the end of the window, and how many have had no
-- tracking update for stale_hours: a current-state metric, told as of {{ window_end }} from the
-- carrier's scans (tracking_events), so any past cycle is replayed as it was then.
-- A parcel is in transit at the window's end if it was picked up before it and not delivered
-- by then; stale if it has no scan in the stale_hours before the end (its latest scan is older).
-- A scan or a delivery after the end does not count. Parcels picked up in the 30 days before
-- the end. Only the pick-up and delivery scans of the 30 days are grouped, and only the last
-- stale_hours of scans are read in full: a cycle reads a fraction of the history it looks at.
WITH in_transit AS (
    SELECT e.shop_id,
           e.warehouse_id,
           e.shipment_id
    FROM tracking_events e
    WHERE e.status IN ('picked_up', 'delivered')
      AND e.event_at < CAST({{ window_end }} AS TIMESTAMPTZ)
      AND e.event_at >= CAST({{ window_end }} AS TIMESTAMPTZ) - INTERVAL '30 days'
    GROUP BY e.shop_id, e.warehouse_id, e.shipment_id
    HAVING SUM(CASE WHEN e.status = 'picked_up' THEN 1 ELSE 0 END) > 0
       AND SUM(CASE WHEN e.status = 'delivered' THEN 1 ELSE 0 END) = 0
),
scanned AS (
    SELECT DISTINCT e.shipment_id
    FROM tracking_events e
    WHERE e.event_at < CAST({{ window_end }} AS TIMESTAMPTZ)
      AND e.event_at >= CAST({{ window_end }} AS TIMESTAMPTZ) - {{ param('stale_hours') }} * INTERVAL '1 hour'
)
SELECT p.shop_id,
       p.warehouse_id,
       CAST({{ last_bucket }} AS TIMESTAMPTZ) AS bucket,
       COUNT(*) AS in_transit,
       SUM(CASE WHEN s.shipment_id IS NULL THEN 1 ELSE 0 END) AS stale_parcels,
       SUM(CASE WHEN s.shipment_id IS NULL THEN 1 ELSE 0 END) * 1.0 / COUNT(*) AS stale_share
FROM in_transit p
LEFT JOIN scanned s ON s.shipment_id = p.shipment_id
GROUP BY p.shop_id, p.warehouse_id
