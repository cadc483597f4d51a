"""Filters: each narrows the candidate workers for one reason (one filter per module)."""
