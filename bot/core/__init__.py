"""Rules: each takes a Session and returns plain values; no Slack."""
