"""Channel senders: one module per vendor, one interface (``base.Sender``)."""
