"""What happens to a breach after the rule engine: alert state, the outbox, delivery (issue 5)."""
