"""Slack listeners, one module per surface. Each stays thin: acknowledge, parse, authorize, call bot.flows."""

from __future__ import annotations

from slack_bolt import App

from bot.services import Services
from handlers import actions, boundary, commands, events, submissions, timebound


def register_all(app: App, services: Services) -> None:
    for module in (boundary, commands, actions, submissions, events, timebound):
        module.register(app, services)
