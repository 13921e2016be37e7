DELETE FROM payments WHERE status = 'failed'
