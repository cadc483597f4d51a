"""A real local Kubernetes control plane built from Go modules, with kwok GPU nodes."""
