"""tokenfleet worker: a batched PyTorch decode engine behind an OpenAI-compatible API."""
