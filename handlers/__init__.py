"""Slack listeners, one module per surface. Each stays thin: acknowledge, parse, authorize, call bot.flows."""

from __future__ import annotations

from slack_bolt import App

from bot.services import Services
from handlers import actions, boundary, commands, events, submissions, timebound
from handlers.middleware import Answer


def register_all(app: App, services: Services, answer: Answer) -> None:
    """`answer`: bot/app.py's error handler, for refusals raised after a listener's ack (handlers/middleware.py)."""
    for module in (boundary, submissions, events):
        module.register(app, services)
    for answering_module in (commands, actions, timebound):
        answering_module.register(app, services, answer)
