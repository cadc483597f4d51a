"""Code shared by the worker, router and operator: metric names and the worker load report.

It imports nothing heavy (no torch, kopf, kubernetes or httpx), so every part can use it.
"""
