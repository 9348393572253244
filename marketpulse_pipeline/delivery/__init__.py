"""Delivery: alerts reach people — Slack, a webhook, email — once, and only when they matter.

`config` reads the channels and the rules from the environment, `policy` decides (pure) which
alerts each channel gets, `messages` renders them, `channels` speaks each protocol, and
`notify` runs one evaluation against the `alert_deliveries` ledger.
"""
