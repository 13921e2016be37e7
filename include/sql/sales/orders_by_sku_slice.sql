-- Orders per SKU and 5-minute slice: the orders that contain the SKU, placed in the slice.
-- Additive (an order is placed once): a rolling rule sums the slices of its window, from a rollup.
SELECT i.shop_id,
       i.sku,
       {{ slice('i.created_at') }} AS bucket,
       COUNT(DISTINCT i.order_id) AS orders
FROM order_items i
WHERE {{ in_window('i.created_at') }}
GROUP BY i.shop_id, i.sku, {{ slice('i.created_at') }}
