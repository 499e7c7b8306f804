"""Which link carries alerts now: MQTT over 4G, BeiDou short messages, or none (hold).

No vendor publishes thresholds (../shared/docs/beidou-rdss.md, section 5), so the policy is
ours and explicit:
- MQTT while the broker is reachable and the modem's CSQ stays above `csq_bad`; leave it at
  once when either fails (alerts must not wait on a dead link).
- At start, MQTT when CSQ is at or above `csq_good` with the broker reachable.
- Come back to MQTT only after CSQ has stayed at or above `csq_good` with the broker reachable
  for `hold_s` (hysteresis: a flapping signal does not flap the link).
- Otherwise BeiDou when its beams have power (the driver paces sends to the service interval);
  otherwise hold alerts in the outbox.
Every switch is logged with its reason.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

MQTT, BEIDOU, HOLD = "mqtt", "beidou", "hold"
_CSQ = re.compile(r"\+CSQ:\s*(\d+)\s*,\s*(\d+)")


def parse_csq(reply: str) -> int | None:
    """`+CSQ: 17,99` -> 17; 99 (unknown) or an unreadable reply -> None."""
    m = _CSQ.search(reply)
    if not m:
        return None
    rssi = int(m.group(1))
    return None if rssi == 99 or rssi > 31 else rssi


@dataclass
class SelectorConfig:
    csq_good: int = 15  # "above ~10 usable, above ~20 good": come back at 15 ...
    csq_bad: int = 9  # ... leave at 9 or below
    hold_s: float = 30.0


@dataclass
class Switch:
    at: float
    link: str
    reason: str


@dataclass
class LinkSelector:
    config: SelectorConfig = field(default_factory=SelectorConfig)
    link: str = HOLD
    _good_since: float | None = None
    history: list[Switch] = field(default_factory=list)

    def update(self, now: float, csq: int | None, broker_ok: bool, beidou_ready: bool) -> str:
        cfg = self.config
        cellular_up = broker_ok and csq is not None and csq > cfg.csq_bad
        if broker_ok and csq is not None and csq >= cfg.csq_good:
            self._good_since = now if self._good_since is None else self._good_since
        else:
            self._good_since = None
        if self.link == MQTT and cellular_up:
            return MQTT
        starting = not self.history  # nothing chosen yet: no hysteresis to respect
        if self.link != MQTT and self._good_since is not None and (starting or now - self._good_since >= cfg.hold_s):
            held = "at start" if starting else f"for {cfg.hold_s:g} s"
            return self._switch(now, MQTT, f"CSQ {csq} >= {cfg.csq_good} and broker reachable {held}")
        why = "broker unreachable" if not broker_ok else f"CSQ {csq if csq is not None else 'unknown'}"
        if self.link == MQTT:  # cellular failed
            why += f" (<= {cfg.csq_bad})" if broker_ok else ""
        if beidou_ready:
            return self._switch(now, BEIDOU, f"{why}; BeiDou beams have power")
        return self._switch(now, HOLD, f"{why}; no BeiDou beam power either: holding alerts")

    def _switch(self, now: float, link: str, reason: str) -> str:
        if link != self.link:
            log.info("link %s -> %s: %s", self.link, link, reason)
            self.history.append(Switch(now, link, reason))
            self.link = link
        return link
