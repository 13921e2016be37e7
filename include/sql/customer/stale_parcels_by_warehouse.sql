-- Parcels in transit per warehouse at the end of the window, and how many have had no
-- tracking update for stale_hours (a current-state metric: the shipments table keeps each
-- parcel's latest tracking state only).
SELECT s.shop_id,
       s.warehouse_id,
       CAST({{ window_end }} AS TIMESTAMPTZ) - INTERVAL '1 hour' AS bucket,
       COUNT(*) AS in_transit,
       SUM(CASE WHEN s.last_tracking_at < CAST({{ window_end }} AS TIMESTAMPTZ)
                                          - {{ param('stale_hours') }} * INTERVAL '1 hour'
                THEN 1 ELSE 0 END) AS stale_parcels,
       SUM(CASE WHEN s.last_tracking_at < CAST({{ window_end }} AS TIMESTAMPTZ)
                                          - {{ param('stale_hours') }} * INTERVAL '1 hour'
                THEN 1 ELSE 0 END) * 1.0 / COUNT(*) AS stale_share
FROM shipments s
WHERE s.status = 'in_transit'
  AND s.shipped_at < CAST({{ window_end }} AS TIMESTAMPTZ)
  AND s.shipped_at >= CAST({{ window_end }} AS TIMESTAMPTZ) - INTERVAL '30 days'
GROUP BY s.shop_id, s.warehouse_id
