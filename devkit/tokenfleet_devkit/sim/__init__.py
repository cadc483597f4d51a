"""The fleet simulator: a discrete-event model of router, workers and autoscaler on a request trace.

It imports the operator's policy (`tokenfleet_operator.policy.decide`) and the router's strategies
(`tokenfleet_router.strategies`) rather than copying them; `adapters.py` is the one place that
speaks their interfaces.
"""
