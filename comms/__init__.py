"""Wire formats and links: the alert record, BeiDou RDSS, MQTT, outbox, ground station."""
