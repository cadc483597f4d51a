"""tokenfleet router: the fleet's OpenAI-compatible front door.

It discovers ready workers, picks one per request by load, prefix and session affinity,
streams the answer back, retries safely and holds requests while the fleet scales from zero.
"""
