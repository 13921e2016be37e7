-- Orders and units per SKU and 5-minute slice: the orders that contain the SKU, placed in the
-- slice, and the units they ordered. Additive (an order is placed once): a rolling rule sums the
-- slices of its window, and current-state rules read the sales rate from the same rollup
-- (rollup('sales/orders_by_sku_slice.sql')): one scan of the landed order lines for all of them.
SELECT i.shop_id,
       i.sku,
       {{ slice('i.created_at') }} AS bucket,
       COUNT(DISTINCT i.order_id) AS orders,
       SUM(i.quantity) AS units
FROM order_items i
WHERE {{ in_window('i.created_at') }}
GROUP BY i.shop_id, i.sku, {{ slice('i.created_at') }}
