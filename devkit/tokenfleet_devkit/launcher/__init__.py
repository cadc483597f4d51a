"""Runs selected pods of the local cluster as real local processes, in place of a kubelet."""
