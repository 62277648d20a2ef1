"""Use cases side by side; only recovery.py calls another flow."""
