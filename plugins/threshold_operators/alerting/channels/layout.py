"""Each channel's limits, and the message laid out to fit them.

A message that lists alerts carries its parts (``Message.parts``: the forms of
``messages.alert_message``, or plain text for the other messages of a digest). A channel with a
byte budget shows as many of the top entities as fit, then a "+N more" line with a link to the
full list on the alerts page; only a message that does not fit with no entity at all is cut. The
budgets are the vendors' (measured on the request the channel sends):

======== ================================================ ==================================
channel  limit                                            laid out
======== ================================================ ==================================
DingTalk request body 20,000 bytes (errcode 460101)       markdown, the top entities that fit
WeCom    ``markdown.content`` 4,096 bytes (errcode 40058) markdown, the top entities that fit
Feishu   request body 20 KB (a card: 30 KB)               a card: one row of fields per entity
email    none that matters                                a table of every entity the form keeps
SMS      70 characters a segment (160 GSM-7 only; 67 and  one segment of facts, the link after
         153 in a long message)
voice    one sentence                                     severity, rule, entity, number
======== ================================================ ==================================
"""

from __future__ import annotations

from collections.abc import Callable

from threshold_operators.alerting.channels.markdown import cut_utf8

SEPARATOR = "\n\n---\n\n"  # between the messages of a digest


def _markdown(part, shown: int) -> str:
    from threshold_operators.alerting.messages import markdown

    return markdown(part, shown) if isinstance(part, dict) else part


def most_shown(message) -> int:
    """How many entities the message lists at most (the chat form: ``messages.TOP``)."""
    from threshold_operators.alerting.messages import TOP

    return max((min(TOP, len(p["items"])) for p in message.parts if isinstance(p, dict)), default=0)


def fit_markdown(message, size: Callable[[str], int], budget: int) -> str:
    """The message's markdown with the most top entities for which ``size(text) <= budget`` (each
    form's rest said by its "+N more" line); a message that does not fit with none, or that has no
    parts, is cut at a character (``size`` of the cut text is at most ``budget``)."""
    if message.parts:
        for shown in range(most_shown(message), -1, -1):
            text = SEPARATOR.join(_markdown(p, shown) for p in message.parts)
            if size(text) <= budget:
                return text
        text = SEPARATOR.join(_markdown(p, 0) for p in message.parts)
    else:
        text = message.text
    if size(text) <= budget:
        return text
    over = size(text) - budget  # what the text must lose, in the measure's bytes
    return cut_utf8(text, max(len(text.encode()) - over, 0))


# --- SMS: segments as the networks count them ----------------------------------------------------
GSM7 = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
           "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXTENDED = set("^{}\\[~]|€")  # two septets each


def sms_units(text: str) -> tuple[int, bool]:
    """(length in the encoding's units, is GSM-7): a text with any character outside GSM-7 (any
    Chinese) is sent as UCS-2, one unit a character (two for one outside the BMP)."""
    if all(c in GSM7 or c in GSM7_EXTENDED for c in text):
        return sum(2 if c in GSM7_EXTENDED else 1 for c in text), True
    return sum(2 if ord(c) > 0xFFFF else 1 for c in text), False


def sms_segments(text: str) -> int:
    """How many SMS segments ``text`` takes: one of 70 UCS-2 characters (160 GSM-7), or, when
    longer, segments of 67 (153) each, the rest being the concatenation header."""
    n, gsm = sms_units(text)
    single, multi = (160, 153) if gsm else (70, 67)
    return 1 if n <= single else -(-n // multi)


def fits_sms(text: str, segments: int = 1) -> bool:
    return sms_segments(text) <= segments
