"""Sending: the outbox, rq jobs and the reconciler, pacing, delivery statuses, the error tree."""
