"""`tokenfleet demo`: a whole fleet on the local control plane, autoscaling under a real trace."""
