"""The demo's second half: a flight's alerts go home over 4G, then over BeiDou past a ridge.

    .venv/bin/python scripts/demo_links.py OUTBOX.db DEVICE.json

Starts a Mosquitto broker on a free loopback port, two simulated BeiDou terminals on
pseudo-terminals (the drone's speaks BDS-3, the ground's the 2.1 dialect: each driver detects
its own), a simulated 4G modem answering AT+CSQ on a third, the ground station (answering by
BeiDou too) and the cloud: `pli cloud ingest`'s worker stores every alert in a database and
acknowledges it after the commit, while a tap prints each copy as it arrives, with the path it
took. The drone's forwarder then empties the outbox that `pli edge run` filled: the modem's
signal is good, drops to nothing for a while (BeiDou carries the alerts, several to a message),
and comes back (MQTT again, after the hysteresis window). The alerts
are handed to the forwarder's outbox at the pace they were raised in flight (compressed).
Ends when every alert is acknowledged, and lists the database's rows: an alert that came by
BeiDou first and by 4G later is one row (`via both`) with its flight and thumbnail.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import paho.mqtt.client as mqtt  # noqa: E402
from sqlalchemy import select  # noqa: E402

from cloud.db import session_scope, upgrade  # noqa: E402
from cloud.ingest import IngestWorker  # noqa: E402
from cloud.models import Alert  # noqa: E402
from comms import alert_json  # noqa: E402
from comms.beidou.driver import Driver  # noqa: E402
from comms.beidou.sim import Network, SimTerminal, TerminalConfig  # noqa: E402
from comms.device import DeviceConfig  # noqa: E402
from comms.forwarder import Forwarder  # noqa: E402
from comms.ground import GroundStation  # noqa: E402
from comms.local_broker import LocalBroker  # noqa: E402
from comms.modem import Modem  # noqa: E402
from comms.modem_sim import SimModem  # noqa: E402
from comms.mqtt_link import MqttConfig, MqttLink, alerts_topic, connect, make_client  # noqa: E402
from comms.outbox import Outbox  # noqa: E402
from comms.replay import ReplayGuard  # noqa: E402
from comms.selector import LinkSelector, SelectorConfig  # noqa: E402


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("comms.selector").setLevel(logging.INFO)
    outbox_path = Path(sys.argv[1])
    device = DeviceConfig.load(sys.argv[2])
    flight = [alert_json.from_json(doc)[0] for doc in Outbox(outbox_path, device.drone_id, device.fleet).alerts()]
    total = len(flight)
    if not total:
        print("no alerts in the outbox: nothing to send")
        return 0
    work = Path(tempfile.mkdtemp(prefix="pli-demo-links-"))
    box = Outbox(work / "drone-outbox.db", device.drone_id, device.fleet)
    broker = LocalBroker(work / "broker").start()
    port = broker.port
    key = device.key()
    net = Network()
    sims = [SimTerminal(TerminalConfig(address=a, service_frequency_s=1.0, delay_s=0.3, bsi_interval_s=0.2,
                                       dialect=dialect), net).start()
            for a, dialect in (("0247718", "bds3"), ("0179773", "2.1"))]
    drone_bd, ground_bd = Driver(sims[0].device), Driver(sims[1].device)
    print(f"BeiDou terminals: drone {drone_bd.card.address} speaks {drone_bd.card.dialect} "
          f"({drone_bd.card.payload_bytes} bytes a message), ground {ground_bd.card.address} speaks "
          f"{ground_bd.card.dialect} (both detected by their drivers)")
    cfg = MqttConfig(port=port)
    arrived: dict[str, str] = {}
    # The cloud: `pli cloud ingest`'s worker storing every alert in the database (SQLite here,
    # PLI_DATABASE_URL for PostgreSQL), and a tap that shows each copy as it arrives.
    db_url = os.environ.get("PLI_DATABASE_URL") or f"sqlite:///{work / 'cloud.db'}"
    upgrade(db_url)
    ingest = IngestWorker(cfg, db_url, name="demo-ingest").start()
    ingest_stop = threading.Event()
    threading.Thread(target=ingest.run, args=(ingest_stop,), daemon=True).start()

    def on_alert(client, userdata, message) -> None:
        alert, thumb = alert_json.loads(message.payload)
        path = "4G" if json.loads(message.payload).get("via") != "beidou" else "BeiDou via ground station"
        if alert.id not in arrived:
            arrived[alert.id] = path
            print(f"  cloud <- {alert.id} {alert.fault_class:<9} {alert.severity.name.lower():<6} "
                  f"{alert.lat:.6f},{alert.lon:.6f} {alert.position_source:<12} by {path}"
                  + (f" (photo {alert.source_frame}, model {alert.model_version})" if thumb else ""), flush=True)

    cloud = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="demo-tap", protocol=mqtt.MQTTv5)
    cloud.on_connect = lambda c, u, f, rc, p: c.subscribe(alerts_topic(cfg.fleet, "+"), qos=1)
    cloud.on_message = on_alert
    cloud.connect("127.0.0.1", port)
    cloud.loop_start()
    gclient = make_client("demo-ground", cfg)
    connect(gclient, cfg)
    station = GroundStation({device.key_id: (device.drone_id, key)}, ReplayGuard(work / "replay.db"), gclient,
                            beidou_acks=True)
    stop = threading.Event()
    threading.Thread(target=station.run, args=(ground_bd, stop), daemon=True).start()
    link = MqttLink(box, cfg, resend_after_s=5)
    link.start()
    link.connected.wait(5)
    started = time.monotonic()
    # CSQ over the flight, as the modem reports it: good, then a ridge (no cellular), then good again.
    modem_sim = SimModem(lambda t: 22 if t < 2.5 or t > 8 else 2).start()
    modem = Modem(modem_sim.device)
    pace = 0.7  # seconds between alerts, as raised along the line
    fwd = Forwarder(box, link, drone_bd, LinkSelector(SelectorConfig(hold_s=2.0)), modem, device.key_id, key,
                    device.ground_address, beidou_acks=True)
    print(f"sending {total} alerts from {outbox_path} (broker on 127.0.0.1:{port}, BeiDou simulated)")
    try:
        while (box.counts().get("acked", 0) < total or box.due("mqtt", resend_after_s=5)) \
                and time.monotonic() - started < 60:
            due = min(total, int((time.monotonic() - started) / pace) + 1)
            for alert in flight[sum(box.counts().values()):due]:
                box.put(alert, alert_json.thumbnail(alert.crop_path) if alert.crop_path else None)
            fwd.tick()
            time.sleep(0.1)
    finally:
        fwd.close()
        stop.set()
        link.stop()
        for d in (drone_bd, ground_bd):
            d.close()
        for s in sims:
            s.stop()
        modem.close()
        modem_sim.stop()
        cloud.loop_stop()
        gclient.loop_stop()
        ingest_stop.set()
        time.sleep(0.3)
        ingest.stop()
        broker.stop()
    acked = box.counts().get("acked", 0)
    by_path = {p: list(arrived.values()).count(p) for p in set(arrived.values())}
    print(f"{acked}/{total} alerts acknowledged by the cloud; first arrivals by path: {by_path}; "
          f"BeiDou messages {fwd.stats.beidou_messages} ({fwd.stats.beidou_alerts} alerts, "
          f"{station.stats.ack_messages} acknowledgements back)")
    with session_scope(db_url) as s:
        ids = [a.id for a in flight]  # this outbox's alerts (the database may hold other flights')
        rows = list(s.scalars(select(Alert).where(Alert.id.in_(ids)).order_by(Alert.time)))
        print(f"in the database ({db_url.split('///')[-1]}): {len(rows)} alerts, "
              f"{len({r.fault_id for r in rows})} faults")
        for r in rows:
            print(f"  {r.id} {r.fault_class:<9} via {r.via:<6} flight {r.flight_id or '-':<18} "
                  f"thumbnail {len(r.thumbnail or b''):>5} B  fault {r.fault_id}  status {r.status}")
    return 0 if acked == total and len(rows) == total else 1


if __name__ == "__main__":
    sys.exit(main())
