"""What Slack sees: Block Kit builders, the notifier, the outbox sender and the App Home read model."""
