"""The admin's Programs page: ``path("admin/supervisor/", include("djsupervisor.urls"))``.

Include it before ``admin.site.urls`` so the admin's catch-all does not shadow it.
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from . import admin_views

app_name = "djsupervisor"

urlpatterns = [
    path("", admin.site.admin_view(admin_views.programs), name="programs"),
    path("table/", admin.site.admin_view(admin_views.table), name="table"),
    path("action/", admin.site.admin_view(admin_views.action), name="action"),
    path("log/<str:name>/", admin.site.admin_view(admin_views.log), name="log"),
    path("log/<str:name>/tail/", admin.site.admin_view(admin_views.log_tail), name="log_tail"),
    path(
        "log/<str:name>/download/",
        admin.site.admin_view(admin_views.download),
        name="download",
    ),
]
