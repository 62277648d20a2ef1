"""koding-iam: Slack-driven provisioning of dedicated AWS IAM users for Koding for Teams."""
