from django.apps import AppConfig


class HeartbeatConfig(AppConfig):
    name = "heartbeat"
