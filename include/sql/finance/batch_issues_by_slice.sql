-- Complaints and quality returns per production batch and 5-minute slice. Complaints carry their
-- batch; a return (quality, damaged, not as described) is counted against the SKU's batch when
-- the slice is computed (the rollup keeps that attribution). Additive: finance.complaint_spike
-- sums them over its rolling window.
WITH complained AS (
    SELECT c.shop_id, c.batch_id, {{ slice('c.created_at') }} AS bucket, COUNT(*) AS complaints
    FROM complaints c
    WHERE {{ in_window('c.created_at') }}
    GROUP BY c.shop_id, c.batch_id, {{ slice('c.created_at') }}
),
returned AS (
    SELECT r.shop_id, p.batch_id, {{ slice('r.requested_at') }} AS bucket, COUNT(*) AS returns
    FROM refunds r
    JOIN products p ON p.shop_id = r.shop_id AND p.sku = r.sku
    WHERE {{ in_window('r.requested_at') }}
      AND r.reason IN ('quality', 'damaged', 'not_as_described')
    GROUP BY r.shop_id, p.batch_id, {{ slice('r.requested_at') }}
)
SELECT COALESCE(c.shop_id, r.shop_id) AS shop_id,
       COALESCE(c.batch_id, r.batch_id) AS batch_id,
       COALESCE(c.bucket, r.bucket) AS bucket,
       COALESCE(c.complaints, 0) AS complaints,
       COALESCE(r.returns, 0) AS returns,
       COALESCE(c.complaints, 0) + COALESCE(r.returns, 0) AS issues
FROM complained c
FULL OUTER JOIN returned r ON r.shop_id = c.shop_id AND r.batch_id = c.batch_id AND r.bucket = c.bucket
