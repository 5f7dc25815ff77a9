"""Delivery: the transactional outbox, the relay that pushes it, and the pull inbox."""

from gateway.delivery.outbox import KINDS, OutboxStatus, enqueue

__all__ = ["KINDS", "OutboxStatus", "enqueue"]
