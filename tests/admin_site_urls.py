"""A project's urls.py with the Programs page, as the README shows it."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/supervisor/", include("djsupervisor.urls")),
    path("admin/", admin.site.urls),
]
