"""Put "Programs" on the admin index and in its navigation, leading to the page."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import NoReverseMatch, reverse

from .models import Programs

# ModelAdmin is generic only in django-stubs; at run time it cannot be subscripted.
if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[Programs]
else:
    _ModelAdmin = admin.ModelAdmin


@admin.register(Programs)
class ProgramsAdmin(_ModelAdmin):
    """No objects to add, change or delete: the changelist is the Programs page."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        try:
            return HttpResponseRedirect(reverse("djsupervisor:programs"))
        except NoReverseMatch:
            raise ImproperlyConfigured(
                'add path("admin/supervisor/", include("djsupervisor.urls")) to your '
                "urls.py, before admin.site.urls"
            ) from None
