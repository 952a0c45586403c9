"""The control plane: the platform's HTTP API (loopback, token) and the process that serves it."""
