-- Orders per SKU and hour: the orders that contain the SKU, placed in the hour.
SELECT i.shop_id,
       i.sku,
       {{ hour('i.created_at') }} AS bucket,
       COUNT(DISTINCT i.order_id) AS orders
FROM order_items i
WHERE {{ in_window('i.created_at') }}
GROUP BY i.shop_id, i.sku, {{ hour('i.created_at') }}
