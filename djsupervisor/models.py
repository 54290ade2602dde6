"""A model with no table: it carries the admin page's permissions and its audit log."""

from __future__ import annotations

from django.db import models


class Programs(models.Model):
    """supervisord's programs, as far as Django's permissions and LogEntry are concerned."""

    # Explicit, so a project's DEFAULT_AUTO_FIELD never asks for a new migration.
    id = models.AutoField(primary_key=True)

    class Meta:
        managed = False  # no table: supervisord holds the state
        verbose_name = "program"
        verbose_name_plural = "programs"
        # Django's own "view" permission of a model named Programs is view_programs.
        default_permissions = ("view",)
        permissions = [("control_programs", "Can start, stop, restart and signal programs")]

    def __str__(self) -> str:
        return "programs"
