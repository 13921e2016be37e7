-- Complaints and returns per production batch and shop-local day. Complaints carry their batch;
-- a return is counted against the SKU's current batch.
WITH complained AS (
    SELECT c.shop_id, c.batch_id, {{ local_day('c.created_at', 's.timezone') }} AS bucket, COUNT(*) AS complaints
    FROM complaints c
    JOIN shops s ON s.shop_id = c.shop_id
    WHERE {{ in_window('c.created_at') }}
    GROUP BY c.shop_id, c.batch_id, {{ local_day('c.created_at', 's.timezone') }}
),
returned AS (
    SELECT r.shop_id, p.batch_id, {{ local_day('r.requested_at', 's.timezone') }} AS bucket, COUNT(*) AS returns
    FROM refunds r
    JOIN products p ON p.shop_id = r.shop_id AND p.sku = r.sku
    JOIN shops s ON s.shop_id = r.shop_id
    WHERE {{ in_window('r.requested_at') }}
      AND r.reason IN ('quality', 'damaged', 'not_as_described')
    GROUP BY r.shop_id, p.batch_id, {{ local_day('r.requested_at', 's.timezone') }}
)
SELECT COALESCE(c.shop_id, r.shop_id) AS shop_id,
       COALESCE(c.batch_id, r.batch_id) AS batch_id,
       COALESCE(c.bucket, r.bucket) AS bucket,
       COALESCE(c.complaints, 0) AS complaints,
       COALESCE(r.returns, 0) AS returns,
       COALESCE(c.complaints, 0) + COALESCE(r.returns, 0) AS issues
FROM complained c
FULL OUTER JOIN returned r ON r.shop_id = c.shop_id AND r.batch_id = c.batch_id AND r.bucket = c.bucket
