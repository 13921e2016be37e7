"""Channel senders: one module per vendor, one interface (``base.Sender``), registered here.

``SENDERS`` maps a channel kind of ``routing.yaml`` to its sender class; the modules are imported
on first use (``SENDERS`` itself is built lazily), so importing this package stays cheap at DAG
parse time. ``senders_for(routing)`` builds one sender per channel from its Airflow connection.
"""

from __future__ import annotations

from importlib import import_module

_REGISTRY = {
    "dingtalk": ("dingtalk", "DingTalkSender"),
    "wecom": ("wecom", "WeComSender"),
    "feishu": ("feishu", "FeishuSender"),
    "slack": ("slack", "SlackSender"),
    "email": ("email", "EmailSender"),
    "sms": ("sms", "SmsSender"),
    "voice": ("sms", "VoiceSender"),
    "webhook": ("webhook", "WebhookSender"),
}
KINDS = tuple(_REGISTRY)


def sender_class(kind: str) -> type:
    try:
        module, cls = _REGISTRY[kind]
    except KeyError:
        raise ValueError(f"unknown channel kind {kind!r} (known: {', '.join(KINDS)})") from None
    return getattr(import_module(f"{__name__}.{module}"), cls)


def __getattr__(name: str):
    if name == "SENDERS":
        return {kind: sender_class(kind) for kind in KINDS}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def sender_for(name: str, channel, **kwargs):
    """The sender of one routing channel (``.kind``, ``.conn_id``), named after the channel (its
    outbox route). Raises when the connection is not defined or is invalid."""
    sender = sender_class(channel.kind).from_connection(channel.conn_id, **kwargs)
    sender.name = name
    return sender


def senders_for(routing, **kwargs) -> tuple[dict, list[str]]:
    """``({channel name: sender}, problems)``: a channel whose connection is missing or invalid is
    left out and reported, so the other channels still deliver."""
    senders, problems = {}, []
    for name, channel in routing.channels.items():
        try:
            senders[name] = sender_for(name, channel, **kwargs)
        except Exception as exc:  # noqa: BLE001 - reported with the channel, the rest still delivers
            problems.append(f"{name}: connection {channel.conn_id!r} ({channel.kind}): "
                            f"{type(exc).__name__}: {str(exc)[:200]}")
    return senders, problems
